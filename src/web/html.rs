//! The one place HTML responses get their security headers. Pages are built by `page`, which
//! sets the Content-Security-Policy for what that page may do (post forms to us and, where the
//! flow continues elsewhere, to exactly those origins); `secure_response` (run by the server's
//! middleware on every response, error pages included) adds the rest.
use actix_web::{
    cookie::Cookie,
    http::{
        header::{self, HeaderMap, HeaderValue},
        StatusCode,
    },
    HttpResponse,
};

/// Where a page's forms may lead and what it may frame, beyond our own origin.
#[derive(Debug, Default, Clone)]
pub(crate) struct PagePolicy {
    /// Origins a form submission may end up at (after our redirect), e.g. the app's redirect URI.
    pub form_targets: Vec<String>,
    /// Origins of iframes (front-channel logout).
    pub frame_sources: Vec<String>,
}

impl PagePolicy {
    /// A page whose form leads (through our redirect) to `url`'s origin.
    pub fn form_target(url: &str) -> Self {
        Self { form_targets: origin(url).into_iter().collect(), ..Default::default() }
    }

    fn content_security_policy(&self) -> String {
        let form_action: Vec<&str> = std::iter::once("'self'").chain(self.form_targets.iter().map(String::as_str)).collect();
        let mut csp = format!(
            "default-src 'self'; img-src 'self' data: https:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action {}",
            form_action.join(" ")
        );
        if !self.frame_sources.is_empty() {
            csp.push_str("; frame-src ");
            csp.push_str(&self.frame_sources.join(" "));
        }
        csp
    }
}

/// The origin of a URL for a CSP source list (`https://app.example:8443`; `com.example.app:` for a
/// private-use scheme). None when the URL cannot be a source (it is then simply not allowed).
pub(crate) fn origin(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let origin = parsed.origin();
    if origin.is_tuple() {
        Some(origin.ascii_serialization())
    } else if parsed.scheme().contains('.') {
        Some(format!("{}:", parsed.scheme()))
    } else {
        None
    }
}

/// An HTML page with its cookies and its policy.
pub(crate) fn page(status: StatusCode, body: String, cookies: Vec<Cookie<'static>>, policy: &PagePolicy) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    response.content_type("text/html; charset=utf-8").insert_header((header::CONTENT_SECURITY_POLICY, policy.content_security_policy()));
    for cookie in cookies {
        response.cookie(cookie);
    }
    response.body(body)
}

/// Adds the security headers to a response: to every one `nosniff` (and HSTS on https); to HTML
/// the full set — a default CSP when the page set none, no framing, no referrer, no caching.
pub(crate) fn secure_response(headers: &mut HeaderMap, https: bool) {
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if https {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    let is_html = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/html"));
    if !is_html {
        return;
    }
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        if let Ok(value) = HeaderValue::from_str(&PagePolicy::default().content_security_policy()) {
            headers.insert(header::CONTENT_SECURITY_POLICY, value);
        }
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_for_csp() {
        assert_eq!(origin("https://app.example/cb?x=1").as_deref(), Some("https://app.example"));
        assert_eq!(origin("http://127.0.0.1:9/cb").as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(origin("com.example.app:/cb").as_deref(), Some("com.example.app:"));
        assert_eq!(origin("javascript:alert(1)"), None);
        assert_eq!(origin("not a url"), None);
    }

    #[test]
    fn html_gets_the_full_set_and_other_responses_nosniff() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        secure_response(&mut headers, true);
        let csp = headers.get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.ends_with("form-action 'self'"), "{csp}");
        for name in [header::X_FRAME_OPTIONS, header::REFERRER_POLICY, header::CACHE_CONTROL, header::STRICT_TRANSPORT_SECURITY] {
            assert!(headers.contains_key(&name), "{name}");
        }
        let mut json = HeaderMap::new();
        json.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        secure_response(&mut json, false);
        assert!(json.contains_key(header::X_CONTENT_TYPE_OPTIONS));
        assert!(!json.contains_key(header::CONTENT_SECURITY_POLICY) && !json.contains_key(header::STRICT_TRANSPORT_SECURITY));
    }
}
