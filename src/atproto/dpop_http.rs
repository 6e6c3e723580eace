//! DPoP-protected requests (to an authorization server or a PDS) through the SSRF-guarded
//! client: a fresh proof per attempt, the per-origin server nonce, and one retry on
//! `use_dpop_nonce`.

use std::sync::Arc;

use url::Url;

use super::dpop::{usable_nonce, DpopKey, NonceCache};
use super::error::AtprotoError;
use super::http::{Endpoint, HttpResponse, SafeHttp};
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
        let mut attempt = 0;
        let mut nonce = self.nonces.get(url);
        loop {
            attempt += 1;
            let proof = key.proof(method, url, nonce.as_deref(), access_token)?;
            let mut headers = vec![("DPoP", proof)];
            if let Some(t) = access_token {
                headers.push(("Authorization", format!("DPoP {t}")));
            }
            let resp = match form {
                Some(build) => {
                    let body = build()?;
                    self.http.post_form(endpoint, url, &headers, &body).await
                }
                None => self.http.get(endpoint, url, &headers).await,
            }
            .map_err(|e| e.into_error(context))?;
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
