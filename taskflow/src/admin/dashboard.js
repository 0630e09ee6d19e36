"use strict";
const PREFIX = document.querySelector('meta[name="taskflow-prefix"]').content;
const STATUSES = ["pending", "running", "success", "failed", "interrupted", "cancelled"];
const $ = (id) => document.getElementById(id);
const state = { csrf: null, view: "tasks", cursors: [null], page: 0, next: null, tasks: [],
  selected: null, tab: "details", sort: { key: "created_at", dir: "desc" }, checked: new Set(), metrics: null };

// Every value goes into the page as text: never as HTML.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function toast(message) {
  const box = $("toast"); box.textContent = message; box.classList.remove("hidden");
  clearTimeout(toast.timer); toast.timer = setTimeout(() => box.classList.add("hidden"), 3500);
}

async function api(path, options = {}) {
  const headers = Object.assign({ "accept": "application/json" }, options.headers || {});
  if (options.method && options.method !== "GET") {
    if (state.csrf) headers["x-taskflow-csrf"] = state.csrf;
    if (options.body !== undefined) headers["content-type"] = "application/json";
  }
  const response = await fetch(PREFIX + path, { method: options.method || "GET", headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body), credentials: "same-origin" });
  if (response.status === 401) { showLogin(); throw new Error("sign in required"); }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || ("HTTP " + response.status));
  return body;
}

const fmtTime = (t) => t ? new Date(t).toLocaleString() : "–";
const fmtDur = (s) => (s === null || s === undefined) ? "–" : (s < 1 ? (s * 1000).toFixed(1) + " ms" : s.toFixed(2) + " s");
const badge = (status) => el("span", { class: "badge " + status }, status);
// A pending task due later waits in the store: for its retry ("retry 2 of 3 at 14:02:07") or
// for its start time. Empty for any other task.
const hhmmss = (t) => new Date(t).toTimeString().slice(0, 8);
const waitNote = (task) => {
  if (task.status !== "pending" || !task.scheduled_at || new Date(task.scheduled_at) <= new Date()) return "";
  return task.retries_used > 0 ? "retry " + task.retries_used + " of " + task.max_retries + " at " + hhmmss(task.scheduled_at)
    : "starts at " + hhmmss(task.scheduled_at);
};
const json = (value) => el("pre", { class: "mono" }, JSON.stringify(value, null, 2));

// ---- sign in ----------------------------------------------------------------------------
async function start() {
  const session = await fetch(PREFIX + "/session", { credentials: "same-origin" }).then((r) => r.json());
  if (session.auth_required && !session.user) return showLogin(session);
  state.csrf = session.csrf;
  if (session.user) { $("who-name").textContent = session.user; $("who").classList.remove("hidden"); }
  $("login").classList.add("hidden"); $("app").classList.remove("hidden");
  buildFilters(); connect();
  await Promise.all([loadTasks(), loadMetrics(), loadThroughput()]);
}

function showLogin(session) {
  $("app").classList.add("hidden"); $("login").classList.remove("hidden");
  if (session && !session.login) { $("login-basic").classList.add("hidden"); $("login-token").classList.remove("hidden"); }
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = $("login-token-value").value;
  const body = token ? { token } : { username: $("login-user").value, password: $("login-password").value };
  const response = await fetch(PREFIX + "/login", { method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (!response.ok) { const e = $("login-error"); e.textContent = "Wrong credentials."; e.classList.remove("hidden"); return; }
  start();
});
$("logout").addEventListener("click", async () => { await api("/logout", { method: "POST" }); location.reload(); });

// Light or dark: the header's toggle, remembered by this browser; until one is chosen, the
// system's preference (the stylesheet's `color-scheme: light dark`).
function applyTheme(theme) {
  if (theme === "dark" || theme === "light") document.documentElement.dataset.theme = theme;
}
try { applyTheme(localStorage.getItem("taskflow-theme")); } catch (_) { /* storage off */ }
$("theme").addEventListener("click", () => {
  const shown = document.documentElement.dataset.theme
    || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  const next = shown === "dark" ? "light" : "dark";
  applyTheme(next);
  try { localStorage.setItem("taskflow-theme", next); } catch (_) { /* storage off */ }
});

// ---- filters, table, paging ---------------------------------------------------------------
const COLUMNS = [
  { key: "check", label: "", dead: true },
  { key: "task_id", label: "Task" }, { key: "func_name", label: "Function" }, { key: "queue", label: "Queue" }, { key: "status", label: "Status" },
  { key: "created_at", label: "Created" }, { key: "duration", label: "Duration" },
  { key: "retries_used", label: "Retries" }, { key: "tags", label: "Tags" },
];

function buildFilters() {
  for (const status of STATUSES) $("f-status").append(el("option", { value: status }, status));
  for (const id of ["f-status", "f-func", "f-queue", "f-since", "f-limit"]) $(id).addEventListener("change", resetPaging);
  api("/queues").then((r) => { for (const q of r.queues) $("f-queue").append(el("option", { value: q.name }, q.name)); }).catch(() => {});
  let typing; $("f-q").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(resetPaging, 250); });
  $("prev").addEventListener("click", () => { state.page -= 1; loadTasks(); });
  $("next").addEventListener("click", () => { state.cursors[state.page + 1] = state.next; state.page += 1; loadTasks(); });
  $("bulk-retry").addEventListener("click", bulkRetry);
  $("retry-all").addEventListener("click", retryAllFailed);
  $("t-window").addEventListener("change", loadThroughput);
  $("m-window").addEventListener("change", loadCharts);
  $("m-func").addEventListener("change", () => drawDurations(state.chartHistory));
  for (const button of document.querySelectorAll("header nav button")) button.addEventListener("click", () => switchView(button.dataset.view));
}

// Views with a section of their own; "tasks" and "dead" share the task table.
const OWN_VIEWS = { audit: () => loadAudit(), queues: () => loadQueues(), registered: () => loadRegistered(),
  instances: () => loadInstances(), schedules: () => loadSchedules(), metrics: () => loadCharts() };

function switchView(view) {
  state.view = view; state.checked.clear();
  for (const button of document.querySelectorAll("header nav button")) button.classList.toggle("active", button.dataset.view === view);
  $("view-tasks").classList.toggle("hidden", view in OWN_VIEWS);
  for (const own of Object.keys(OWN_VIEWS)) $("view-" + own).classList.toggle("hidden", view !== own);
  $("dead-actions").classList.toggle("hidden", view !== "dead");
  $("f-status").disabled = view === "dead";
  if (view in OWN_VIEWS) OWN_VIEWS[view](); else resetPaging();
}

function resetPaging() { state.cursors = [null]; state.page = 0; loadTasks(); }

function query() {
  const params = new URLSearchParams();
  const status = state.view === "dead" ? "failed" : $("f-status").value;
  if (status) params.set("status", status);
  if ($("f-func").value) params.set("func_name", $("f-func").value);
  if ($("f-queue").value) params.set("queue", $("f-queue").value);
  if ($("f-since").value) params.set("since", $("f-since").value);
  if ($("f-q").value.trim()) params.set("q", $("f-q").value.trim());
  params.set("limit", $("f-limit").value);
  params.set("sort", state.sort.key === "created_at" && state.sort.dir === "asc" ? "created_at" : "-created_at");
  const cursor = state.cursors[state.page]; if (cursor) params.set("cursor", cursor);
  return params.toString();
}

// The CSV export of the filtered view: every matching task, not one page.
$("export").addEventListener("click", () => {
  const params = new URLSearchParams(query());
  params.delete("limit"); params.delete("cursor");
  $("export").href = PREFIX + "/export.csv?" + params.toString();
});

async function loadTasks() {
  try {
    const page = await api("?" + query());
    state.tasks = page.tasks; state.next = page.next_cursor;
    renderTable();
  } catch (error) { toast(error.message); }
}

function sortValue(task, key) {
  if (key === "tags") return JSON.stringify(task.tags);
  const value = task[key]; return value === null || value === undefined ? "" : value;
}

function renderTable() {
  const dead = state.view === "dead";
  const head = $("head"); head.replaceChildren();
  for (const column of COLUMNS) {
    if (column.dead && !dead) continue;
    const th = el("th", { "data-key": column.key }, column.label);
    if (state.sort.key === column.key) th.classList.add(state.sort.dir === "asc" ? "sorted-asc" : "sorted-desc");
    if (column.key !== "check") th.addEventListener("click", () => sortBy(column.key));
    head.append(th);
  }
  let tasks = state.tasks.slice();
  if (state.sort.key !== "created_at") {
    const { key, dir } = state.sort;
    tasks.sort((a, b) => { const x = sortValue(a, key), y = sortValue(b, key); return (x < y ? -1 : x > y ? 1 : 0) * (dir === "asc" ? 1 : -1); });
  }
  const rows = $("rows"); rows.replaceChildren();
  for (const task of tasks) {
    const tags = Object.entries(task.tags || {}).map(([k, v]) => k + "=" + v).join(", ");
    const row = el("tr", { "data-id": task.task_id, "data-status": task.status });
    if (dead) {
      const box = el("input", { type: "checkbox", "aria-label": "select" });
      box.checked = state.checked.has(task.task_id);
      box.addEventListener("click", (e) => e.stopPropagation());
      box.addEventListener("change", () => { box.checked ? state.checked.add(task.task_id) : state.checked.delete(task.task_id); $("bulk-retry").disabled = state.checked.size === 0; });
      row.append(el("td", {}, box));
    }
    row.append(el("td", { class: "mono", title: task.task_id }, task.task_id.slice(-12)), el("td", {}, task.func_name), el("td", {}, task.queue),
      el("td", {}, badge(task.status), waitNote(task) ? el("div", { class: "muted wait-note" }, waitNote(task)) : null,
        ["pending", "running"].includes(task.status) ? progressBar(task) : null),
      el("td", {}, fmtTime(task.created_at)), el("td", {}, fmtDur(task.duration)),
      el("td", {}, String(task.retries_used) + " / " + String(task.max_retries)), el("td", { title: tags }, tags));
    if (task.task_id === state.selected) row.classList.add("selected");
    row.addEventListener("click", () => select(task.task_id));
    rows.append(row);
  }
  if (tasks.length === 0) rows.append(el("tr", {}, el("td", { colspan: "9", class: "muted" }, "No tasks.")));
  $("prev").disabled = state.page === 0; $("next").disabled = !state.next;
  $("page-info").textContent = "page " + (state.page + 1) + " · " + tasks.length + " tasks";
  $("bulk-retry").disabled = state.checked.size === 0;
}

function sortBy(key) {
  state.sort = { key, dir: state.sort.key === key && state.sort.dir === "desc" ? "asc" : "desc" };
  if (key === "created_at") resetPaging(); else renderTable();
}

// ---- stat cards -----------------------------------------------------------------------------
async function loadMetrics() {
  try {
    const since = $("f-since").value;
    const metrics = await api("/metrics" + (since ? "?since=" + encodeURIComponent(since) : ""));
    state.metrics = metrics;
    let runs = 0, successes = 0, total = 0, weighted = 0, p95 = null;
    for (const f of metrics.functions) {
      runs += f.runs; successes += f.successes;
      if (f.avg_duration !== null) { weighted += f.avg_duration * f.runs; total += f.runs; }
      if (f.p95_duration !== null) p95 = Math.max(p95 || 0, f.p95_duration);
    }
    const card = (label, value, status) => el("div", { class: "card", "data-card": status || label },
      el("div", { class: "label" }, label), el("div", { class: "value" }, value));
    $("cards").replaceChildren(card("total", metrics.total, "total"),
      ...STATUSES.map((s) => card(s, metrics.by_status[s] || 0, s)),
      card("success rate", runs ? (100 * successes / runs).toFixed(1) + " %" : "–", "rate"),
      card("avg duration", total ? fmtDur(weighted / total) : "–", "avg"), card("p95 duration", fmtDur(p95), "p95"));
    const func = $("f-func"), chosen = func.value;
    func.replaceChildren(el("option", { value: "" }, "all functions"), ...metrics.functions.map((f) => el("option", { value: f.func_name }, f.func_name)));
    if (chosen && !metrics.functions.some((f) => f.func_name === chosen)) func.append(el("option", { value: chosen }, chosen));
    func.value = chosen;
  } catch (error) { toast(error.message); }
}

// ---- detail panel ---------------------------------------------------------------------------
async function select(id) {
  state.selected = id;
  for (const row of document.querySelectorAll("#rows tr")) row.classList.toggle("selected", row.dataset.id === id);
  await renderDetail();
}

async function renderDetail() {
  const panel = $("detail");
  if (!state.selected) { panel.classList.add("hidden"); $("layout").classList.remove("with-detail"); return; }
  let task;
  try { task = await api("/" + state.selected); } catch (error) { toast(error.message); return; }
  panel.classList.remove("hidden"); $("layout").classList.add("with-detail");
  const actions = el("div", { class: "filters" });
  if (["failed", "interrupted", "cancelled"].includes(task.status)) actions.append(el("button", { class: "act primary", id: "retry", onclick: () => retry(task.task_id) }, "Retry"));
  if (["pending", "running"].includes(task.status)) actions.append(el("button", { class: "act", id: "cancel", onclick: () => cancel(task.task_id) }, "Cancel"));
  actions.append(el("button", { class: "act", onclick: () => { state.selected = null; renderDetail(); renderTable(); } }, "Close"));
  const tabs = el("div", { class: "tabs" });
  for (const [key, label] of [["details", "Details"], ["logs", "Logs (" + task.logs.length + ")"], ["error", "Error"]]) {
    tabs.append(el("button", { class: state.tab === key ? "active" : "", "data-tab": key, onclick: () => { state.tab = key; renderDetail(); } }, label));
  }
  const body = el("div", { id: "tab-body" });
  if (state.tab === "details") body.append(...await detailsTab(task));
  if (state.tab === "logs") body.append(...(task.logs.length ? task.logs.map((log) => el("div", { class: "log" },
    el("span", { class: "lvl" }, log.level.toUpperCase()), el("span", { class: "muted" }, fmtTime(log.at) + " · attempt " + log.attempt + " "),
    el("div", {}, log.message), Object.keys(log.fields).length ? json(log.fields) : null)) : [el("p", { class: "muted" }, "No log lines.")]));
  if (state.tab === "error") body.append(...(task.error ? [el("p", { id: "error-message" }, task.error), el("pre", { class: "mono", id: "stacktrace" }, task.stacktrace || "")] : [el("p", { class: "muted" }, "No error.")]));
  panel.replaceChildren(el("h2", {}, task.func_name, " ", badge(task.status)), el("div", { class: "mono muted" }, task.task_id), actions, tabs, body);
}

// A task's last progress report as a bar, with its figures and message as text beside it.
function progressBar(task) {
  const p = task.progress;
  if (!p) return null;
  const share = p.total > 0 ? Math.min(1, p.done / p.total) : 0;
  const label = p.done + " / " + p.total + (p.message ? " · " + p.message : "");
  // Through the CSSOM: the page's CSP refuses style attributes.
  const fill = el("div", { class: "progress-fill" });
  fill.style.width = (100 * share).toFixed(1) + "%";
  return el("div", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": String(p.total),
    "aria-valuenow": String(p.done), title: label, "data-done": String(p.done), "data-total": String(p.total) },
    fill, el("span", { class: "progress-text" }, label));
}

async function detailsTab(task) {
  const rows = [["created", fmtTime(task.created_at)], ["started", fmtTime(task.start_time)], ["ended", fmtTime(task.end_time)],
    ["duration", fmtDur(task.duration)], ["attempts", (task.retries_used + 1) + " (retries " + task.retries_used + " / " + task.max_retries + ")"],
    ["next attempt", waitNote(task) || "–"], ["priority", task.priority], ["source", task.source], ["idempotency key", task.idempotency_key || "–"],
    ["retry of", task.retry_of || "–"], ["tags", Object.entries(task.tags).map(([k, v]) => k + "=" + v).join(", ") || "–"]];
  const out = [el("dl", {}, ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]))];
  if (task.progress) out.push(el("h3", {}, "Progress"), progressBar(task),
    el("p", { class: "muted" }, "reported " + fmtTime(task.progress.updated_at)));
  out.push(el("h3", {}, "Arguments"), json(task.args));
  if (task.result !== null && task.result !== undefined) out.push(el("h3", {}, "Result"), json(task.result));
  const f = (state.metrics && state.metrics.functions.find((x) => x.func_name === task.func_name));
  if (f) out.push(el("h3", {}, "This function"), el("dl", {}, ...[["runs", f.runs], ["success rate", (100 * f.success_rate).toFixed(1) + " %"],
    ["avg", fmtDur(f.avg_duration)], ["p95", fmtDur(f.p95_duration)], ["min / max", fmtDur(f.min_duration) + " / " + fmtDur(f.max_duration)]]
    .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))])));
  try {
    const recent = await api("?func_name=" + encodeURIComponent(task.func_name) + "&limit=8");
    out.push(el("h3", {}, "Recent runs"), el("table", {}, el("tbody", {}, ...recent.tasks.map((t) =>
      el("tr", { onclick: () => select(t.task_id) }, el("td", { class: "mono" }, t.task_id.slice(-12)), el("td", {}, badge(t.status)), el("td", {}, fmtDur(t.duration)))))));
  } catch (error) { /* shown by api() */ }
  return out;
}

// ---- actions --------------------------------------------------------------------------------
async function retry(id) {
  try { const r = await api("/" + id + "/retry", { method: "POST" }); toast("Retried as " + r.task_id.slice(-12)); state.selected = r.task_id; await refresh(); }
  catch (error) { toast(error.message); }
}
async function cancel(id) {
  try { const r = await api("/" + id + "/cancel", { method: "POST" }); toast("Task " + r.outcome); await refresh(); }
  catch (error) { toast(error.message); }
}
async function bulkRetry() {
  try { const r = await api("/bulk-retry", { method: "POST", body: { ids: [...state.checked] } }); state.checked.clear(); toast(r.retried.length + " retried, " + r.errors.length + " refused"); await refresh(); }
  catch (error) { toast(error.message); }
}
async function retryAllFailed() {
  if (!confirm("Retry every failed task in this view?")) return;
  const body = {}; if ($("f-since").value) body.since = $("f-since").value; if ($("f-func").value) body.func_name = $("f-func").value;
  try { const r = await api("/retry-failed", { method: "POST", body }); toast(r.retried.length + " retried"); await refresh(); }
  catch (error) { toast(error.message); }
}

async function loadAudit() {
  try {
    const audit = await api("/audit");
    $("audit-rows").replaceChildren(...audit.entries.map((e) => el("tr", {}, el("td", {}, fmtTime(e.at)), el("td", {}, e.actor),
      el("td", {}, e.action), el("td", { class: "mono" }, e.task_id || "–"), el("td", {}, e.detail))));
    if (!audit.entries.length) $("audit-rows").append(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "Nothing yet.")));
  } catch (error) { toast(error.message); }
}

// ---- queues and registered tasks ------------------------------------------------------------
async function loadQueues() {
  try {
    const { queues } = await api("/queues");
    $("queue-rows").replaceChildren(...queues.map((q) => {
      const size = el("input", { type: "number", min: "1", value: String(q.concurrency), class: "queue-size", "aria-label": "concurrency of " + q.name });
      const toggle = el("button", { class: "act queue-toggle", onclick: () => queueAction(q.name, q.paused ? "resume" : "pause") }, q.paused ? "Resume" : "Pause");
      const resize = el("button", { class: "act queue-resize", onclick: () => resizeQueue(q.name, size.value) }, "Set");
      return el("tr", { "data-queue": q.name, "data-paused": String(q.paused) },
        el("td", {}, q.name, q.runs_here ? null : el("span", { class: "muted" }, " (not run here)")),
        el("td", { class: "q-pending" }, q.pending), el("td", { class: "q-due" }, q.due), el("td", { class: "q-running" }, q.running),
        el("td", {}, q.running_here), el("td", {}, size, resize), el("td", {}, q.global_concurrency ?? "–"),
        el("td", {}, q.max_pending ?? "–"), el("td", {}, q.rate_per_second === null ? "–" : q.rate_per_second + "/s"), el("td", { class: "q-state" }, q.paused ? badge("paused") : "active"), el("td", {}, toggle));
    }));
  } catch (error) { toast(error.message); }
}
async function queueAction(name, action) {
  try { await api("/queues/" + encodeURIComponent(name) + "/" + action, { method: "POST" }); toast(name + ": " + action + "d"); await loadQueues(); }
  catch (error) { toast(error.message); }
}
async function resizeQueue(name, value) {
  try { await api("/queues/" + encodeURIComponent(name), { method: "PATCH", body: { concurrency: Number(value) } }); toast(name + ": concurrency " + value); await loadQueues(); }
  catch (error) { toast(error.message); }
}
// ---- schedules ------------------------------------------------------------------------------
async function loadSchedules() {
  try {
    const { schedules } = await api("/schedules");
    $("schedule-rows").replaceChildren(...schedules.map((s) => {
      const toggle = el("button", { class: "act schedule-toggle", onclick: () => scheduleAction(s.name, s.paused ? "resume" : "pause") }, s.paused ? "Resume" : "Pause");
      const trigger = el("button", { class: "act schedule-trigger", onclick: () => scheduleAction(s.name, "trigger") }, "Run now");
      const last = s.last_task
        ? el("td", { class: "s-last" }, el("a", { href: "#", class: "mono s-last-task", onclick: (e) => { e.preventDefault(); openTask(s.last_task); } }, s.last_task.slice(-12)),
          " ", s.last_status ? badge(s.last_status) : el("span", { class: "muted" }, "pruned"))
        : el("td", { class: "s-last muted" }, "never");
      const when = s.problem ? el("td", { class: "error" }, s.problem) : el("td", {}, s.definition || "–");
      return el("tr", { "data-schedule": s.name, "data-paused": String(s.paused) },
        el("td", { class: "mono" }, s.name), el("td", { class: "mono" }, s.task), when,
        el("td", { class: "s-next" }, s.next ? fmtTime(s.next) : "–"), last,
        el("td", { class: "s-state" }, s.paused ? badge("paused") : "active"), el("td", {}, toggle, " ", trigger));
    }));
    if (!schedules.length) $("schedule-rows").append(el("tr", {}, el("td", { colspan: "7", class: "muted" }, "No schedules.")));
  } catch (error) { toast(error.message); }
}
async function scheduleAction(name, action) {
  try {
    const r = await api("/schedules/" + encodeURIComponent(name) + "/" + action, { method: "POST" });
    toast(action === "trigger" ? name + ": started " + r.task_id.slice(-12) : name + ": " + action + "d");
    await loadSchedules();
  } catch (error) { toast(error.message); }
}
// Shows a task of another view in the task table's detail panel.
async function openTask(id) { switchView("tasks"); await select(id); }

// A declared schedule: its definition and next slot, or its error.
function scheduleText(schedule) {
  if (!schedule) return "–";
  if (schedule.error) return `invalid: ${schedule.error}`;
  return `${schedule.definition}, next ${fmtTime(schedule.next)}`;
}
async function loadRegistered() {
  try {
    const { tasks } = await api("/registered");
    $("registered-rows").replaceChildren(...tasks.map((t) => el("tr", { "data-task": t.name },
      el("td", { class: "mono" }, t.name), el("td", {}, t.queue), el("td", {}, t.retries), el("td", {}, t.priority),
      el("td", {}, t.concurrency ?? "–"), el("td", {}, t.timeout_secs === null ? "–" : fmtDur(t.timeout_secs)),
      el("td", {}, t.blocking ? "blocking" : "async"), el("td", {}, scheduleText(t.schedule)),
      el("td", { class: "mono muted" }, t.location))));
  } catch (error) { toast(error.message); }
}

async function loadInstances() {
  try {
    const { instances } = await api("/instances");
    $("instance-rows").replaceChildren(...instances.map((i) => el("tr", { "data-instance": i.id },
      el("td", { class: "mono" }, i.id), el("td", {}, i.host), el("td", {}, i.pid), el("td", {}, fmtTime(i.started_at)),
      el("td", {}, i.queues.join(", ")), el("td", { class: "i-running" }, i.running), el("td", {}, fmtTime(i.seen_at)))));
  } catch (error) { toast(error.message); }
}

// ---- live -----------------------------------------------------------------------------------
async function refresh() {
  const view = OWN_VIEWS[state.view] || loadTasks;
  const chart = state.view === "tasks" || state.view === "dead" ? loadThroughput() : null;
  await Promise.all([loadMetrics(), view(), chart]);
  if (state.selected) await renderDetail();
}
// Queue counts change with every fetch, not only with task events: read them every 2 s.
// Not while a concurrency is being typed: the row would be drawn again under the cursor.
setInterval(() => {
  const typing = document.activeElement && document.activeElement.classList.contains("queue-size");
  if (state.view === "queues" && !document.hidden && !typing) loadQueues();
  if (state.view === "instances" && !document.hidden) loadInstances();
  if (state.view === "schedules" && !document.hidden) loadSchedules();
}, 2000);

let pending = null;
function scheduleRefresh() { if (!pending) pending = setTimeout(() => { pending = null; refresh(); }, 300); }

function connect() {
  const source = new EventSource(PREFIX + "/stream");
  source.onopen = () => { $("live").className = "on"; $("live").textContent = "live"; };
  source.onerror = () => { $("live").className = "off"; $("live").textContent = "reconnecting"; };
  source.addEventListener("task", scheduleRefresh);
  source.addEventListener("snapshot", scheduleRefresh);
}

start().catch((error) => toast(error.message));
