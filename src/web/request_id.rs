//! The request id: taken from `X-Request-Id` when a trusted proxy (`ATSSO_TRUSTED_PROXIES`) sent
//! a sane one, generated otherwise. It is a field of the request's span (so every log line of
//! the request carries it), the `X-Request-Id` of every response, and shown on error pages.
use actix_web::dev::ServiceRequest;

pub(crate) const HEADER: &str = "x-request-id";
/// Longest id we accept from a proxy.
const MAX_LEN: usize = 64;

tokio::task_local! {
    /// The id of the request being served (read by the error page, which has no request).
    static CURRENT: String;
}

/// The id for `req`: the proxy's when the TCP peer is trusted and the value is sane.
pub(crate) fn for_request(req: &ServiceRequest, trusted_proxies: &[ipnet::IpNet]) -> String {
    let peer_trusted = req.peer_addr().is_some_and(|peer| trusted_proxies.iter().any(|net| net.contains(&peer.ip())));
    if peer_trusted {
        if let Some(value) = req.headers().get(HEADER).and_then(|v| v.to_str().ok()).filter(|v| is_sane(v)) {
            return value.to_owned();
        }
    }
    crate::crypto::random_token(12)
}

/// At most 64 characters of `[A-Za-z0-9._-]`: safe in a header, a log line and a page.
fn is_sane(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_LEN && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Runs `fut` (serving one request) with `id` as the current request id.
pub(crate) async fn scope<F: std::future::Future>(id: String, fut: F) -> F::Output {
    CURRENT.scope(id, fut).await
}

/// Runs `f` (the synchronous part of dispatching a request) with `id` as the current id.
pub(crate) fn sync_scope<R>(id: String, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(id, f)
}

/// The id of the request being served, if any.
pub(crate) fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_sane() {
        assert!(is_sane("abc-123_X.y"));
        assert!(is_sane(&"a".repeat(64)));
        assert!(!is_sane(&"a".repeat(65)));
        assert!(!is_sane(""));
        assert!(!is_sane("a b"));
        assert!(!is_sane("a\"<b>"));
        assert!(!is_sane("é"));
    }

    #[tokio::test]
    async fn current_is_set_only_inside_the_scope() {
        assert_eq!(current(), None);
        assert_eq!(scope("r1".into(), async { current() }).await.as_deref(), Some("r1"));
    }
}
