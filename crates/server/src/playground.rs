//! The playground: `GET /` answers one page from the binary itself (`playground.html` and its
//! script `playground.js`, both compiled in: no build step, no CDN, nothing fetched from another
//! host). The page talks to the native API like any
//! client: `/v1/info`, the streaming `/v1/execute`, `/v1/sessions`.
//!
//! The page and its script hold no secret and no data, so they are served without a token (the browser cannot
//! send `Authorization` when it navigates); every call it makes carries the token its user
//! gives it, and each of those routes checks it.
//!
//! The code it runs is untrusted, and so is everything the code prints: the page sets sandbox
//! text only as text (`textContent`), and shows a result's `text/html` in an iframe with
//! `sandbox=""` (no scripts, an opaque origin). The Content-Security-Policy below is the second
//! wall: it runs no inline script (the script is a file of this server's: markup that slipped
//! into the page could not run any), and a `srcdoc` iframe inherits it (CSP 3, "policy
//! container"), so a result's HTML cannot load anything from another host either (no tracking
//! pixel, no exfiltration through the viewer's browser); the page itself can only talk to this
//! server. tests/python/test_playground.py checks both walls in Chromium.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The page.
pub const PAGE: &str = include_str!("playground.html");

/// Its script.
pub const SCRIPT: &str = include_str!("playground.js");

/// The paths served without a token (the auth layer lets them through).
pub const OPEN_PATHS: [&str; 2] = ["/", "/playground.js"];

/// What the page may do. Scripts: this server's files only, no inline script, no `eval`.
/// Styles: the page's own `<style>` (`'unsafe-inline'`: a style cannot run code, and the page
/// inserts no markup from the sandbox). Images: `data:` (plots); downloads are `blob:` links.
/// Calls: this server only. The iframe of a result's HTML gets `sandbox=""` besides, which runs
/// no script whatever this says.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
    img-src data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

fn answer(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// `GET /`.
pub async fn page() -> Response {
    answer("text/html; charset=utf-8", PAGE)
}

/// `GET /playground.js`.
pub async fn script() -> Response {
    answer("text/javascript; charset=utf-8", SCRIPT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule of the page, as far as text can check it: no API that parses a string as
    /// markup in this document (sandbox text reaches the page as text only).
    #[test]
    fn script_never_parses_markup_outside_the_iframe() {
        for api in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "createContextualFragment",
            "DOMParser",
            "eval(",
            "new Function",
        ] {
            assert!(!SCRIPT.contains(api), "playground.js uses {api}");
        }
        // The one place HTML goes: a sandboxed iframe granting nothing.
        assert_eq!(SCRIPT.matches(".srcdoc =").count(), 1);
        assert!(SCRIPT.contains(r#"f.setAttribute("sandbox", "");"#));
    }

    /// The CSP allows no inline script, so the page has none: its one script is the file.
    #[test]
    fn page_has_no_inline_script_or_handler() {
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert!(PAGE.contains(r#"<script src="/playground.js"></script>"#));
        // No inline handler attribute (` onclick=`): the CSP would refuse it.
        for (i, _) in PAGE.match_indices(" on") {
            let rest = &PAGE[i + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            assert!(
                name_len == 0 || !rest[name_len..].starts_with('='),
                "playground.html has an inline handler: {}",
                &rest[..name_len]
            );
        }
        let script_src = CSP
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src"));
        assert_eq!(script_src, Some("script-src 'self'"));
    }

    /// No CDN, no font or script from elsewhere: the page works offline and leaks nothing.
    #[test]
    fn page_fetches_nothing_from_another_host() {
        for needle in ["http://", "https://", "//cdn", "@import", "url("] {
            assert!(!PAGE.contains(needle), "playground.html contains {needle}");
            assert!(!SCRIPT.contains(needle), "playground.js contains {needle}");
        }
        assert!(CSP.contains("default-src 'none'"));
        assert!(CSP.contains("connect-src 'self'"));
    }
}
