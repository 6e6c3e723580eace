//! DPoP-protected requests (to an authorization server or a PDS) through the SSRF-guarded
//! client: a fresh proof per attempt, the per-origin server nonce, and one retry on
//! `use_dpop_nonce`.

use std::sync::Arc;

use url::Url;

use super::dpop::{usable_nonce, DpopKey, NonceCache};
use super::error::AtprotoError;
use super::http::{Endpoint, HttpError, HttpResponse, RawBody, SafeHttp};
use super::urls::origin_string;

/// Form fields of an AS request.
pub(crate) type FormFields = Vec<(&'static str, String)>;
/// Builds a request form; called once per attempt so client assertions are never reused.
pub(crate) type FormBuilder<'a> = dyn Fn() -> Result<FormFields, AtprotoError> + Sync + 'a;

/// The SSRF-guarded client plus the DPoP nonces of every origin it has talked to. Cheap to
/// clone; one per [`super::AtprotoClient`].
#[derive(Debug, Clone)]
pub struct DpopHttp {
    http: SafeHttp,
    nonces: Arc<NonceCache>,
}

impl DpopHttp {
    pub fn new(http: SafeHttp) -> Self {
        Self { http, nonces: Arc::new(NonceCache::new()) }
    }

    /// Send a DPoP-protected request; on `use_dpop_nonce` (AS: 400 JSON, PDS: 401 +
    /// `WWW-Authenticate`) retry exactly once with the new nonce. `form` is rebuilt for the retry
    /// (a client assertion's `jti` must not be reused).
    pub(crate) async fn request(
        &self,
        endpoint: Endpoint,
        key: &DpopKey,
        url: &Url,
        access_token: Option<&str>,
        form: Option<&FormBuilder<'_>>,
        context: fn(String) -> AtprotoError,
    ) -> Result<HttpResponse, AtprotoError> {
        let method = if form.is_some() { "POST" } else { "GET" };
        self.with_nonce_retry(key, method, url, access_token, context, |headers| async move {
            match form {
                Some(build) => {
                    let body = build().map_err(Attempt::Build)?;
                    self.http.post_form(endpoint, url, &headers, &body).await.map_err(Attempt::Http)
                }
                None => self.http.get(endpoint, url, &headers).await.map_err(Attempt::Http),
            }
        })
        .await
    }

    /// A DPoP-protected request to a resource server with any method, a raw body and extra
    /// headers (a proxied XRPC call); the response is read up to `max_response_bytes`. Same
    /// nonce handling as [`DpopHttp::request`].
    #[allow(clippy::too_many_arguments)] // one call site: the XRPC proxy
    pub(crate) async fn request_raw(
        &self,
        key: &DpopKey,
        method: &str,
        url: &Url,
        access_token: &str,
        extra_headers: &[(&'static str, String)],
        body: Option<&RawBody>,
        max_response_bytes: usize,
        context: fn(String) -> AtprotoError,
    ) -> Result<HttpResponse, AtprotoError> {
        self.with_nonce_retry(key, method, url, Some(access_token), context, |mut headers| async move {
            headers.extend(extra_headers.iter().cloned());
            self.http.send_raw(Endpoint::Xrpc, method, url, &headers, body, max_response_bytes).await.map_err(Attempt::Http)
        })
        .await
    }

    /// One attempt, then one retry with the server's new nonce on `use_dpop_nonce`. `send` gets
    /// the DPoP (and authorization) headers of its attempt.
    async fn with_nonce_retry<F, Fut>(
        &self,
        key: &DpopKey,
        method: &str,
        url: &Url,
        access_token: Option<&str>,
        context: fn(String) -> AtprotoError,
        send: F,
    ) -> Result<HttpResponse, AtprotoError>
    where
        F: Fn(Vec<(&'static str, String)>) -> Fut,
        Fut: std::future::Future<Output = Result<HttpResponse, Attempt>>,
    {
        let mut attempt = 0;
        let mut nonce = self.nonces.get(url);
        loop {
            attempt += 1;
            let proof = key.proof(method, url, nonce.as_deref(), access_token)?;
            let mut headers = vec![("DPoP", proof)];
            if let Some(t) = access_token {
                headers.push(("Authorization", format!("DPoP {t}")));
            }
            let resp = send(headers).await.map_err(|e| match e {
                Attempt::Build(e) => e,
                Attempt::Http(e) => e.into_error(context),
            })?;
            let fresh = self.nonces.update(url, resp.header("dpop-nonce"));
            // The retry uses the nonce just received, whether or not the bounded cache kept it.
            if let Some(n) = usable_nonce(resp.header("dpop-nonce")) {
                nonce = Some(n.to_string());
            }
            if attempt == 1 && is_use_dpop_nonce(&resp) {
                tracing::debug!(origin = %origin_string(url), fresh, "DPoP nonce challenge, retrying once");
                continue;
            }
            return Ok(resp);
        }
    }
}

/// Why one attempt failed: building its form, or the request itself.
enum Attempt {
    Build(AtprotoError),
    Http(HttpError),
}

fn is_use_dpop_nonce(resp: &HttpResponse) -> bool {
    match resp.status {
        400 | 401 => {
            let in_header = resp.header("www-authenticate").is_some_and(|h| h.contains("use_dpop_nonce"));
            let in_body = resp.oauth_error().is_some_and(|(e, _)| e == "use_dpop_nonce");
            in_header || in_body
        }
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn nonce_challenge_detection() {
        let mk = |status: u16, www: Option<&str>, body: &str| {
            let mut headers = reqwest::header::HeaderMap::new();
            if let Some(w) = www {
                headers.insert("www-authenticate", w.parse().unwrap());
            }
            HttpResponse { status, headers, body: body.as_bytes().to_vec() }
        };
        assert!(is_use_dpop_nonce(&mk(400, None, r#"{"error":"use_dpop_nonce"}"#)));
        assert!(is_use_dpop_nonce(&mk(401, Some(r#"DPoP error="use_dpop_nonce""#), "")));
        assert!(!is_use_dpop_nonce(&mk(400, None, r#"{"error":"invalid_grant"}"#)));
        assert!(!is_use_dpop_nonce(&mk(200, None, r#"{"error":"use_dpop_nonce"}"#)));
    }
}
