//! Durations in `#[task]` keys (`delay`, `max_delay`, `timeout`, `every`, `catch_up`):
//! humantime's syntax, or a number of seconds.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Expr, Lit};

use crate::args::{Dur, literal};

/// A `std::time::Duration` expression for `dur`, through the runtime crate `krate`.
pub(crate) fn tokens(krate: &TokenStream, dur: &Dur) -> TokenStream {
    let (secs, nanos) = (dur.secs, dur.nanos);
    quote!(#krate::__private::Duration::new(#secs, #nanos))
}

/// A duration: a string in humantime's syntax (`"250ms"`, `"1.5s"`, `"2m"`, `"1h 30m"`), or
/// a number of seconds.
pub(crate) fn duration_value(expr: &Expr, key: &str, nonzero: bool) -> syn::Result<Dur> {
    let bad = |what: String| {
        syn::Error::new_spanned(
            expr,
            format!(
                "`{key}` {what}: write a duration such as `{key} = \"250ms\"`, `\"1.5s\"`, `\"2m\"` or `\"1h 30m\"` (units ms, s, m, h, d), or a number of seconds such as `{key} = 5`"
            ),
        )
    };
    let nanos: f64 = match literal(expr) {
        Some((_, true)) => return Err(bad("must not be negative".to_owned())),
        Some((Lit::Int(i), false)) => i.base10_parse::<f64>()? * 1e9,
        Some((Lit::Float(f), false)) => f.base10_parse::<f64>()? * 1e9,
        Some((Lit::Str(s), false)) => {
            let text = s.value();
            parse_duration(&text)
                .map_err(|why| bad(format!("has an invalid duration `{text}` ({why})")))?
                .as_nanos() as f64
        }
        _ => return Err(bad("must be a string or a number".to_owned())),
    };
    if !nanos.is_finite() || nanos >= u64::MAX as f64 {
        return Err(bad("is out of range".to_owned()));
    }
    let nanos = nanos.round() as u128;
    if nonzero && nanos == 0 {
        return Err(bad("must be greater than zero".to_owned()));
    }
    Ok(Dur { secs: (nanos / 1_000_000_000) as u64, nanos: (nanos % 1_000_000_000) as u32 })
}

/// `text` as a duration, by humantime; a bare number (no unit) is refused, as it reads as
/// seconds in some tools and milliseconds in others.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|err| match err {
        humantime::DurationError::UnknownUnit { unit, .. } if unit.is_empty() => {
            "a unit is missing".to_owned()
        }
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        let ok = |text: &str| parse_duration(text).unwrap();
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("1s"), Duration::from_secs(1));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1h 30m"), Duration::from_secs(5400));
        assert_eq!(ok(" 2h30m "), Duration::from_secs(9000));
        assert_eq!(ok("1d"), Duration::from_secs(86_400));
        assert_eq!(parse_duration("5").unwrap_err(), "a unit is missing");
        for bad in ["soon", "5x", ".5s", ""] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
