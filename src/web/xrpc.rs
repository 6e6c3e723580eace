//! `GET|POST /xrpc/{nsid}`: the permissioned XRPC proxy (`crate::proxy`). The app's atsso
//! access token as Bearer; the request body is read up to `ATSSO_XRPC_MAX_BODY_BYTES`.
use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse, ResponseError,
};
use futures_util::StreamExt;
use serde_json::json;

use super::{audit_addr, bearer_token};
use crate::{
    atproto::client::XrpcMethod,
    error::{log_internal, UNAVAILABLE_RETRY_AFTER_SECS},
    proxy::{self, ProxyError, XrpcCall},
    state::AppState,
    store::StoreError,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/xrpc/{nsid}", web::get().to(xrpc_get)).route("/xrpc/{nsid}", web::post().to(xrpc_post));
}

async fn xrpc_get(state: web::Data<AppState>, req: HttpRequest, nsid: web::Path<String>, body: web::Payload) -> HttpResponse {
    xrpc(&state, &req, XrpcMethod::Get, nsid.into_inner(), body).await
}

async fn xrpc_post(state: web::Data<AppState>, req: HttpRequest, nsid: web::Path<String>, body: web::Payload) -> HttpResponse {
    xrpc(&state, &req, XrpcMethod::Post, nsid.into_inner(), body).await
}

#[tracing::instrument(name = "xrpc", skip_all, fields(nsid = %nsid))]
async fn xrpc(state: &AppState, req: &HttpRequest, method: XrpcMethod, nsid: String, payload: web::Payload) -> HttpResponse {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let result = async {
        let token = bearer_token(req).ok_or(ProxyError::InvalidToken)?;
        let record = proxy::authenticate(state, &token).await?;
        let body = read_bounded(req, payload, state.config.xrpc_max_body_bytes).await?;
        let call = XrpcCall {
            method,
            nsid,
            query: req.query_string().to_owned(),
            body,
            content_type: header("content-type"),
            atproto_proxy: header("atproto-proxy"),
            accept_labelers: header("atproto-accept-labelers"),
        };
        proxy::proxy_call(state, &record, call, audit_addr(state, req)).await
    }
    .await;
    proxy::observe(result.as_ref());
    match result {
        Ok(upstream) => {
            let status = StatusCode::from_u16(upstream.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut response = HttpResponse::build(status);
            for (name, value) in upstream.headers {
                response.insert_header((name, value));
            }
            response.insert_header((header::CACHE_CONTROL, "no-store")).body(upstream.body)
        }
        Err(err) => err.error_response(),
    }
}

/// The body, at most `max` bytes (413 beyond, before reading when the length is announced).
async fn read_bounded(req: &HttpRequest, mut payload: web::Payload, max: usize) -> Result<bytes::Bytes, ProxyError> {
    let announced = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|len| len > max as u64) {
        return Err(ProxyError::BodyTooLarge { max });
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ProxyError::InvalidRequest(format!("the body could not be read: {e}")))?;
        if body.len() + chunk.len() > max {
            return Err(ProxyError::BodyTooLarge { max });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// XRPC-style error bodies (`{"error","message"}`) with the RFC 6750 challenge on 401/403.
impl ResponseError for ProxyError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidToken | Self::SessionEnded => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable | Self::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamAuth | Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        let (error, message) = match self {
            Self::InvalidToken | Self::SessionEnded => {
                let challenge = format!("Bearer realm=\"atsso\", error=\"invalid_token\", error_description=\"{self}\"");
                response.insert_header((header::WWW_AUTHENTICATE, challenge));
                ("invalid_token", self.to_string())
            }
            Self::InsufficientScope { required } => {
                // `required` is a canonical permission: printable ASCII without quotes.
                let challenge = format!("Bearer realm=\"atsso\", error=\"insufficient_scope\", scope=\"{required}\"");
                response.insert_header((header::WWW_AUTHENTICATE, challenge));
                ("insufficient_scope", self.to_string())
            }
            Self::InvalidRequest(_) => ("InvalidRequest", self.to_string()),
            Self::BodyTooLarge { .. } => ("PayloadTooLarge", self.to_string()),
            Self::RateLimited { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
                ("RateLimitExceeded", self.to_string())
            }
            Self::Unavailable | Self::Store(StoreError::Unavailable(_)) => {
                response.insert_header((header::RETRY_AFTER, UNAVAILABLE_RETRY_AFTER_SECS.to_string()));
                ("temporarily_unavailable", "the service is briefly unavailable; try again shortly".to_owned())
            }
            Self::UpstreamAuth => ("UpstreamFailure", self.to_string()),
            Self::Upstream(cause) => {
                tracing::warn!(error = %cause, "proxied call to the PDS failed");
                ("UpstreamFailure", "calling the user's PDS failed".to_owned())
            }
            Self::Store(cause) => {
                let error_id = log_internal(cause);
                ("InternalServerError", format!("internal error (reference {error_id})"))
            }
        };
        response.json(json!({ "error": error, "message": message }))
    }
}
