// ---- charts: inline SVG drawn from GET {p}/metrics/history (no library, works offline) -------
// Colours come from the page's classes (c-*), which follow the light or dark theme. Each mark
// carries its figures in data-* attributes, read by the browser test against the API.
const SVG_NS = "http://www.w3.org/2000/svg";
const CHART = { w: 720, h: 170, left: 44, right: 8, top: 10, bottom: 22 };
const QUEUE_COLOURS = 6;

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

const plotHeight = () => CHART.h - CHART.top - CHART.bottom;
const plotWidth = () => CHART.w - CHART.left - CHART.right;
const yOf = (value, max) => CHART.top + plotHeight() * (1 - value / max);
const shortTime = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

// A frame: the base line, the top value, and labels under the first and last points.
function frame(max, first, last) {
  const base = CHART.h - CHART.bottom;
  return [
    svg("line", { class: "c-axis", x1: CHART.left, x2: CHART.w - CHART.right, y1: base, y2: base }),
    svg("line", { class: "c-grid", x1: CHART.left, x2: CHART.w - CHART.right, y1: CHART.top, y2: CHART.top }),
    svg("text", { class: "c-label", x: CHART.left - 4, y: CHART.top + 4, "text-anchor": "end" }, String(max)),
    svg("text", { class: "c-label", x: CHART.left - 4, y: base, "text-anchor": "end" }, "0"),
    svg("text", { class: "c-label", x: CHART.left, y: CHART.h - 6 }, first),
    svg("text", { class: "c-label", x: CHART.w - CHART.right, y: CHART.h - 6, "text-anchor": "end" }, last),
  ];
}

// Draws at the container's width (text stays its size), 170 px high.
function fit(id) { CHART.w = Math.max(320, Math.round($(id).clientWidth || 720)); }

function chart(label, ...children) {
  return svg("svg", { viewBox: `0 0 ${CHART.w} ${CHART.h}`, role: "img", "aria-label": label, class: "chart" }, ...children);
}

async function loadThroughput() {
  try {
    const history = await api("/metrics/history?window=" + encodeURIComponent($("t-window").value));
    state.history = history;
    drawThroughput(history);
  } catch (error) { toast(error.message); }
}

// Succeeded (below) and failed (stacked on top) per point.
function drawThroughput(history) {
  fit("chart-throughput");
  const points = history.points;
  const max = Math.max(1, ...points.map((p) => p.succeeded + p.failed));
  const width = plotWidth() / Math.max(points.length, 1);
  const marks = points.map((p, i) => {
    const x = CHART.left + i * width, base = CHART.h - CHART.bottom;
    const ok = yOf(p.succeeded, max), bad = yOf(p.succeeded + p.failed, max);
    return svg("g", { class: "point", "data-at": p.at, "data-succeeded": p.succeeded, "data-failed": p.failed },
      svg("rect", { class: "c-succeeded", x, y: ok, width: Math.max(width - 1, 1), height: base - ok }),
      svg("rect", { class: "c-failed", x, y: bad, width: Math.max(width - 1, 1), height: ok - bad }),
      svg("title", {}, `${fmtTime(p.at)}: ${p.succeeded} succeeded, ${p.failed} failed, ${p.retried} retried` +
        (p.avg_duration === null ? "" : `, avg ${fmtDur(p.avg_duration)}`)));
  });
  const first = points.length ? shortTime(points[0].at) : "", last = points.length ? shortTime(history.to) : "";
  $("chart-throughput").replaceChildren(chart("tasks succeeded and failed per " + history.step / 60 + " min",
    ...frame(max, first, last), ...marks));
}

// The Metrics view: each function's duration histogram, and each queue's depth over time.
async function loadCharts() {
  try {
    const history = await api("/metrics/history?window=" + encodeURIComponent($("m-window").value));
    state.chartHistory = history;
    const pick = $("m-func"), chosen = pick.value;
    pick.replaceChildren(...history.functions.map((f) => el("option", { value: f.func_name }, f.func_name)));
    if (history.functions.some((f) => f.func_name === chosen)) pick.value = chosen;
    drawDurations(history);
    drawDepth(history);
  } catch (error) { toast(error.message); }
}

const bucketLabel = (bounds, i) => i < bounds.length ? "≤" + fmtDur(bounds[i]) : ">" + fmtDur(bounds[bounds.length - 1]);

function drawDurations(history) {
  const f = history.functions.find((f) => f.func_name === $("m-func").value);
  $("m-func-summary").textContent = f ? `${f.runs} runs · p50 ${fmtDur(f.p50)} · p95 ${fmtDur(f.p95)} · p99 ${fmtDur(f.p99)} · max ${fmtDur(f.max)}` : "no runs in this window";
  if (!f) { $("chart-durations").replaceChildren(); return; }
  fit("chart-durations");
  const max = Math.max(1, ...f.histogram);
  const width = plotWidth() / f.histogram.length;
  const marks = f.histogram.map((count, i) => {
    const x = CHART.left + i * width, y = yOf(count, max);
    return svg("g", { class: "bucket", "data-bucket": i, "data-count": count },
      svg("rect", { class: "c-bar", x: x + 1, y, width: Math.max(width - 2, 1), height: CHART.h - CHART.bottom - y }),
      svg("title", {}, `${bucketLabel(history.bounds, i)}: ${count}`));
  });
  $("chart-durations").replaceChildren(chart("durations of " + f.func_name,
    ...frame(max, bucketLabel(history.bounds, 0), bucketLabel(history.bounds, f.histogram.length - 1)), ...marks));
}

function drawDepth(history) {
  fit("chart-depth");
  const max = Math.max(1, ...history.queues.flatMap((q) => q.depth));
  const n = history.points.length, step = plotWidth() / Math.max(n - 1, 1);
  const lines = history.queues.map((q, k) => {
    const coords = q.depth.map((d, i) => `${(CHART.left + i * step).toFixed(1)},${yOf(d, max).toFixed(1)}`).join(" ");
    return svg("g", { class: "queue-line", "data-queue": q.queue, "data-depth": q.depth.join(",") },
      svg("polyline", { class: "c-line q" + (k % QUEUE_COLOURS), points: coords }),
      svg("title", {}, `${q.queue}: ${q.depth[q.depth.length - 1]} pending or running now`));
  });
  const first = n ? shortTime(history.points[0].at) : "", last = n ? shortTime(history.to) : "";
  $("chart-depth").replaceChildren(chart("queue depth over time", ...frame(max, first, last), ...lines));
  $("depth-legend").replaceChildren(...history.queues.map((q, k) =>
    el("span", { class: "legend" }, svg("svg", { width: 12, height: 12 }, svg("rect", { class: "c-key q" + (k % QUEUE_COLOURS), width: 12, height: 12 })), " " + q.queue)));
}

// Time moves the charts even when no task changes: redrawn every 30 s while in view.
setInterval(() => {
  if (document.hidden || $("app").classList.contains("hidden")) return;
  if (state.view === "tasks" || state.view === "dead") loadThroughput();
  if (state.view === "metrics") loadCharts();
}, 30000);
