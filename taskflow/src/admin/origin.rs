//! Where a state-changing request comes from. A browser names the page that sent a request in
//! `Origin` (or, without it, `Referer`) and says how it relates to the target in
//! `Sec-Fetch-Site`; a request another site's page sent is refused whatever credentials it
//! carries, since a browser attaches Basic credentials and cookies to it by itself.

use axum::http::{HeaderMap, header};

/// Why a request is refused as cross-origin; `None` when it may go on.
///
/// Accepted: no browser markers at all (`curl`, a script: no CSRF possible), or an `Origin`
/// (else `Referer`) whose host and port are the request's own `Host` (or `X-Forwarded-Host`,
/// which a page cannot set across origins without a CORS preflight) or one of `trusted`
/// (`scheme://host[:port]`). `Sec-Fetch-Site: cross-site` is always refused, and `same-site`
/// (a sibling subdomain) unless its origin is trusted.
pub(crate) fn refusal(headers: &HeaderMap, trusted: &[String]) -> Option<String> {
    let fetch_site = text(headers, "sec-fetch-site");
    let source = text(headers, header::ORIGIN.as_str())
        .map(|origin| (origin.to_owned(), "Origin"))
        .or_else(|| {
            text(headers, header::REFERER.as_str())
                .map(|referer| (origin_of(referer).unwrap_or_default(), "Referer"))
        });
    if fetch_site == Some("cross-site") {
        return Some("cross-site requests may not change tasks".to_owned());
    }
    let Some((origin, from)) = source else {
        return match fetch_site {
            Some("same-site") => Some("same-site requests need a trusted `Origin`".to_owned()),
            _ => None,
        };
    };
    let lower = origin.to_ascii_lowercase();
    if trusted.iter().any(|t| t.trim_end_matches('/').eq_ignore_ascii_case(&lower)) {
        return None;
    }
    if fetch_site == Some("same-site") {
        return Some(format!("same-site requests from `{origin}` are not trusted"));
    }
    let authority = lower.split_once("://").map(|(_, rest)| rest);
    let own = [text(headers, header::HOST.as_str()), text(headers, "x-forwarded-host")];
    let matches_own = authority.is_some_and(|authority| {
        own.iter()
            .flatten()
            .flat_map(|h| h.split(','))
            .any(|h| h.trim().eq_ignore_ascii_case(authority))
    });
    if matches_own {
        None
    } else {
        Some(format!("cross-origin requests may not change tasks ({from} `{origin}`)"))
    }
}

fn text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// `scheme://host[:port]` of a URL; `None` when it has no such prefix.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    (!authority.is_empty()).then(|| format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn decides_by_origin_referer_and_fetch_metadata() {
        let none: &[String] = &[];
        let host = ("host", "app.example:8000");
        assert_eq!(refusal(&headers(&[host]), none), None, "no browser markers");
        assert_eq!(refusal(&headers(&[host, ("origin", "http://app.example:8000")]), none), None);
        assert!(refusal(&headers(&[host, ("origin", "http://evil.example")]), none).is_some());
        assert!(refusal(&headers(&[host, ("origin", "null")]), none).is_some());
        assert!(refusal(&headers(&[host, ("referer", "http://evil.example/x?y")]), none).is_some());
        assert_eq!(
            refusal(
                &headers(&[host, ("referer", "http://app.example:8000/tasks/dashboard")]),
                none
            ),
            None
        );
        assert!(refusal(&headers(&[host, ("referer", "garbage")]), none).is_some());
        assert!(
            refusal(&headers(&[host, ("sec-fetch-site", "cross-site")]), none).is_some(),
            "cross-site without Origin"
        );
        let sibling = [host, ("sec-fetch-site", "same-site"), ("origin", "https://a.example")];
        assert!(refusal(&headers(&sibling), none).is_some());
        assert_eq!(refusal(&headers(&sibling), &["https://a.example".to_owned()]), None);
        let proxied =
            [host, ("x-forwarded-host", "public.example"), ("origin", "https://public.example")];
        assert_eq!(refusal(&headers(&proxied), none), None);
    }
}
