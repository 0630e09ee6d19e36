//! The `#[task(...)]` keys: parsed by hand with `syn::meta::parser`, each value kept with the
//! span of the key that set it, every mistake collected instead of stopping at the first.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Expr, Lit, LitStr, UnOp};

use crate::duration::duration_value;
use crate::errors::Errors;
use crate::schedule::ScheduleArgs;

/// Every key `#[task]` accepts, in the order the docs list them.
pub(crate) const KEYS: &[&str] = &[
    "retries",
    "delay",
    "backoff",
    "max_delay",
    "timeout",
    "name",
    "priority",
    "queue",
    "concurrency",
    "eager",
    "requeue_on_interrupt",
    "blocking",
    "jitter",
    "crate",
];

/// A duration fixed at compile time, as whole nanoseconds split like `std::time::Duration`.
#[derive(Clone, Copy)]
pub(crate) struct Dur {
    pub(crate) secs: u64,
    pub(crate) nanos: u32,
}

/// One key's value and the span of the key, so later checks can point at it.
pub(crate) struct Attr<T> {
    key: &'static str,
    value: Option<(T, Span)>,
}

impl<T> Attr<T> {
    pub(crate) fn new(key: &'static str) -> Self {
        Attr { key, value: None }
    }

    /// Stores a value; a second occurrence of the key is an error at that occurrence.
    pub(crate) fn set(&mut self, span: Span, value: T, errors: &mut Errors) {
        if self.value.is_some() {
            errors.push(syn::Error::new(
                span,
                format!("duplicate `{}` in `#[task]`: give each key once", self.key),
            ));
        } else {
            self.value = Some((value, span));
        }
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref().map(|(v, _)| v)
    }

    pub(crate) fn span(&self) -> Option<Span> {
        self.value.as_ref().map(|(_, s)| *s)
    }
}

/// The parsed `#[task(...)]` arguments.
pub(crate) struct TaskArgs {
    pub(crate) retries: Attr<u32>,
    pub(crate) delay: Attr<Dur>,
    pub(crate) backoff: Attr<f64>,
    pub(crate) max_delay: Attr<Dur>,
    pub(crate) timeout: Attr<Dur>,
    pub(crate) name: Attr<String>,
    pub(crate) priority: Attr<i32>,
    pub(crate) queue: Attr<String>,
    pub(crate) concurrency: Attr<u32>,
    pub(crate) eager: Attr<bool>,
    pub(crate) requeue_on_interrupt: Attr<bool>,
    pub(crate) blocking: Attr<bool>,
    pub(crate) jitter: Attr<bool>,
    pub(crate) krate: Attr<syn::Path>,
    pub(crate) schedule: ScheduleArgs,
}

impl TaskArgs {
    fn empty() -> Self {
        TaskArgs {
            retries: Attr::new("retries"),
            delay: Attr::new("delay"),
            backoff: Attr::new("backoff"),
            max_delay: Attr::new("max_delay"),
            timeout: Attr::new("timeout"),
            name: Attr::new("name"),
            priority: Attr::new("priority"),
            queue: Attr::new("queue"),
            concurrency: Attr::new("concurrency"),
            eager: Attr::new("eager"),
            requeue_on_interrupt: Attr::new("requeue_on_interrupt"),
            blocking: Attr::new("blocking"),
            jitter: Attr::new("jitter"),
            krate: Attr::new("crate"),
            schedule: ScheduleArgs::empty(),
        }
    }

    /// Parses the attribute's tokens. Errors go to `errors`; what parsed is kept, so the
    /// expansion can go on with defaults for the rest.
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> Self {
        let mut args = TaskArgs::empty();
        let parser = syn::meta::parser(|meta| {
            args.parse_key(&meta, errors);
            Ok(())
        });
        if let Err(err) = syn::parse::Parser::parse2(parser, tokens) {
            errors.push(err);
        }
        args
    }

    fn parse_key(&mut self, meta: &ParseNestedMeta<'_>, errors: &mut Errors) {
        let span = meta.path.span();
        let key = match meta.path.get_ident() {
            Some(ident) => ident.to_string(),
            None => String::new(),
        };
        let value = match value_of(meta, &key) {
            Ok(value) => value,
            Err(err) => {
                errors.push(err);
                return;
            }
        };
        let result = match key.as_str() {
            "retries" => int_value::<u32>(&value, "retries", "retries = 3", false)
                .map(|v| self.retries.set(span, v, errors)),
            "delay" => {
                duration_value(&value, "delay", false).map(|v| self.delay.set(span, v, errors))
            }
            "max_delay" => duration_value(&value, "max_delay", true)
                .map(|v| self.max_delay.set(span, v, errors)),
            "timeout" => {
                duration_value(&value, "timeout", true).map(|v| self.timeout.set(span, v, errors))
            }
            "backoff" => backoff_value(&value).map(|v| self.backoff.set(span, v, errors)),
            "name" => name_value(&value).map(|v| self.name.set(span, v, errors)),
            "priority" => int_value::<i32>(&value, "priority", "priority = 10", true)
                .map(|v| self.priority.set(span, v, errors)),
            "queue" => queue_value(&value).map(|v| self.queue.set(span, v, errors)),
            "concurrency" => {
                concurrency_value(&value).map(|v| self.concurrency.set(span, v, errors))
            }
            "eager" => bool_value(&value, "eager").map(|v| self.eager.set(span, v, errors)),
            "requeue_on_interrupt" => bool_value(&value, "requeue_on_interrupt")
                .map(|v| self.requeue_on_interrupt.set(span, v, errors)),
            "blocking" => {
                bool_value(&value, "blocking").map(|v| self.blocking.set(span, v, errors))
            }
            "jitter" => bool_value(&value, "jitter").map(|v| self.jitter.set(span, v, errors)),
            "crate" => crate_value(&value).map(|v| self.krate.set(span, v, errors)),
            _ => match self.schedule.parse_key(&key, &value, span, errors) {
                Some(result) => result,
                None => Err(unknown_key(&meta.path)),
            },
        };
        if let Err(err) = result {
            errors.push(err);
        }
    }
}

/// An unknown key, reported on the key with the list of valid ones and the closest match.
fn unknown_key(path: &syn::Path) -> syn::Error {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let key = segments.join("::");
    let all = || KEYS.iter().chain(crate::schedule::KEYS);
    let valid: Vec<String> = all().map(|k| format!("`{k}`")).collect();
    let suggestion = all()
        .map(|k| (edit_distance(&key, k), k))
        .filter(|(d, k)| {
            *d <= 2 || key.chars().zip(k.chars()).take_while(|(a, b)| a == b).count() >= 4
        })
        .min()
        .map(|(_, k)| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    syn::Error::new_spanned(
        path,
        format!(
            "unknown `#[task]` key `{key}`{suggestion}; the valid keys are: {}",
            valid.join(", ")
        ),
    )
}

/// Levenshtein distance, for the "did you mean" hint.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb { prev } else { 1 + prev.min(cur).min(row[j]) };
            prev = cur;
        }
    }
    row[b.len()]
}

/// Reads `= value`. A bare key (`#[task(eager)]`) or a list (`retries(3)`) is an error that
/// shows the `key = value` form.
fn value_of(meta: &ParseNestedMeta<'_>, key: &str) -> syn::Result<Expr> {
    if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<Expr>()
    } else {
        // Consume whatever follows so the parser can go on to the next key.
        if meta.input.peek(syn::token::Paren) {
            let content;
            syn::parenthesized!(content in meta.input);
            let _: TokenStream = content.parse()?;
        }
        let hint = match key {
            "eager" | "requeue_on_interrupt" | "blocking" | "jitter" => format!("`{key} = true`"),
            "" => "`key = value`".to_owned(),
            "run_on_startup" => "`run_on_startup = true`".to_owned(),
            _ if KEYS.contains(&key) || crate::schedule::KEYS.contains(&key) => {
                format!("`{key} = ...`")
            }
            _ => return Err(unknown_key(&meta.path)),
        };
        Err(syn::Error::new(meta.path.span(), format!("expected a value: write {hint}")))
    }
}

/// Strips `-` from a negative literal, returning the literal and whether it was negated.
pub(crate) fn literal(expr: &Expr) -> Option<(&Lit, bool)> {
    match expr {
        Expr::Lit(lit) => Some((&lit.lit, false)),
        Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => match &*unary.expr {
            Expr::Lit(lit) => Some((&lit.lit, true)),
            _ => None,
        },
        Expr::Group(group) => literal(&group.expr),
        _ => None,
    }
}

fn int_value<T>(expr: &Expr, key: &str, example: &str, signed: bool) -> syn::Result<T>
where
    T: std::str::FromStr + Bounded,
{
    let bad =
        |what: &str| syn::Error::new_spanned(expr, format!("`{key}` {what}: write `{example}`"));
    let (lit, negative) = literal(expr).ok_or_else(|| bad("must be an integer literal"))?;
    let Lit::Int(int) = lit else {
        return Err(bad("must be an integer literal"));
    };
    if negative && !signed {
        return Err(bad("must not be negative"));
    }
    let digits =
        if negative { format!("-{}", int.base10_digits()) } else { int.base10_digits().to_owned() };
    digits.parse::<T>().map_err(|_| bad(&format!("must be between {} and {}", T::MIN, T::MAX)))
}

/// The range of an integer key's type, for the out-of-range message.
trait Bounded {
    const MIN: i64;
    const MAX: i64;
}

impl Bounded for u32 {
    const MIN: i64 = 0;
    const MAX: i64 = u32::MAX as i64;
}

impl Bounded for i32 {
    const MIN: i64 = i32::MIN as i64;
    const MAX: i64 = i32::MAX as i64;
}

/// `concurrency = N`: how many of the task's tasks run at once, at least 1.
fn concurrency_value(expr: &Expr) -> syn::Result<u32> {
    let n = int_value::<u32>(expr, "concurrency", "concurrency = 2", false)?;
    if n == 0 {
        return Err(syn::Error::new_spanned(
            expr,
            "`concurrency` must be at least 1 (a task that may never run): write `concurrency = 2`, or leave it out for no limit of its own",
        ));
    }
    Ok(n)
}

pub(crate) fn bool_value(expr: &Expr, key: &str) -> syn::Result<bool> {
    match literal(expr) {
        Some((Lit::Bool(b), false)) => Ok(b.value),
        _ => Err(syn::Error::new_spanned(
            expr,
            format!("`{key}` must be `true` or `false`: write `{key} = true`"),
        )),
    }
}

fn backoff_value(expr: &Expr) -> syn::Result<f64> {
    let bad = |what: &str| {
        syn::Error::new_spanned(
            expr,
            format!(
                "`backoff` {what}: it multiplies the delay before each further retry, write `backoff = 2.0` (1.0 keeps the delay constant)"
            ),
        )
    };
    let value = match literal(expr) {
        Some((Lit::Float(f), neg)) => f.base10_parse::<f64>()? * if neg { -1.0 } else { 1.0 },
        Some((Lit::Int(i), neg)) => i.base10_parse::<f64>()? * if neg { -1.0 } else { 1.0 },
        _ => return Err(bad("must be a number")),
    };
    if !value.is_finite() || value < 1.0 {
        return Err(bad(&format!("must be at least 1.0, found {value}")));
    }
    Ok(value)
}

fn name_value(expr: &Expr) -> syn::Result<String> {
    let Some((Lit::Str(s), false)) = literal(expr) else {
        return Err(syn::Error::new_spanned(
            expr,
            "`name` must be a string literal: write `name = \"send_email\"`",
        ));
    };
    let name = s.value();
    if name.is_empty() {
        return Err(syn::Error::new_spanned(
            expr,
            "`name` must not be empty: it identifies stored tasks, write `name = \"send_email\"` or leave it out to use the fn name",
        ));
    }
    if name.trim() != name || name.chars().any(char::is_control) {
        return Err(syn::Error::new_spanned(
            expr,
            "`name` must not start or end with whitespace nor contain control characters",
        ));
    }
    if name.len() > 200 {
        return Err(syn::Error::new_spanned(expr, "`name` must be at most 200 bytes long"));
    }
    Ok(name)
}

/// A queue name, by the rule of `taskflow::is_valid_queue_name`.
fn queue_value(expr: &Expr) -> syn::Result<String> {
    let Some((Lit::Str(s), false)) = literal(expr) else {
        return Err(syn::Error::new_spanned(
            expr,
            "`queue` must be a string literal: write `queue = \"emails\"`",
        ));
    };
    let name = s.value();
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid {
        return Err(syn::Error::new_spanned(
            expr,
            format!(
                "`queue` has an invalid name {name:?}: a queue name is 1 to 64 ASCII letters, digits, `_`, `-` or `.`, such as `queue = \"emails\"`"
            ),
        ));
    }
    Ok(name)
}

fn crate_value(expr: &Expr) -> syn::Result<syn::Path> {
    let Some((Lit::Str(s), false)) = literal(expr) else {
        return Err(syn::Error::new_spanned(
            expr,
            "`crate` must be a string holding a path: write `crate = \"::my_taskflow\"`",
        ));
    };
    LitStr::parse::<syn::Path>(s).map_err(|_| {
        syn::Error::new_spanned(expr, "`crate` must be a path such as `\"::my_taskflow\"`")
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn edit_distances() {
        assert_eq!(super::edit_distance("retry", "retries"), 3);
        assert_eq!(super::edit_distance("dealy", "delay"), 2);
        assert_eq!(super::edit_distance("delay", "delay"), 0);
        assert_eq!(super::edit_distance("", "abc"), 3);
    }
}
