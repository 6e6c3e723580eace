//! HTTP glue: routes, extractors and responses. Handlers are thin: parse, call a plain
//! function of the protocol modules, turn its outcome into a response.
mod admin_api;
mod admin_ui;
mod atproto;
mod errors;
pub(crate) mod html;
mod logout;
mod metrics;
mod oidc;
mod pages;
mod registration;
pub(crate) mod request_id;
mod session;
mod xrpc;

use actix_web::{http::header, web, HttpRequest, HttpResponse};

use crate::{
    error::{OAuthError, PageError},
    oidc::params::Params,
    state::AppState,
};

/// Largest request body we read (forms are far smaller).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .app_data(
            web::FormConfig::default()
                .limit(MAX_BODY_BYTES)
                .error_handler(|err, _| PageError::bad_request("Invalid form", format!("The form could not be read: {err}")).into()),
        )
        .app_data(
            web::QueryConfig::default()
                .error_handler(|_, _| PageError::bad_request("Invalid address", "The address has invalid parameters.").into()),
        )
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics::main_listener_metrics))
        .route("/assets/style.css", web::get().to(stylesheet));
    oidc::configure(cfg);
    pages::configure(cfg);
    atproto::configure(cfg);
    logout::configure(cfg);
    registration::configure(cfg);
    admin_api::configure(cfg);
    admin_ui::configure(cfg);
    xrpc::configure(cfg);
}

/// The running HTTP server (what `Application` awaits).
pub type Server = actix_web::dev::Server;

/// How long a stopping server lets in-flight requests finish (SIGTERM/SIGINT) before it drops
/// them; below the usual 30 s a container runtime waits before SIGKILL.
pub const SHUTDOWN_TIMEOUT_SECS: u64 = 20;

/// Starts the HTTP server on `listener`: every route, the security headers of every response,
/// one span per request carrying its request id, and (when metrics are on) the request series.
pub(crate) fn serve(state: AppState, listener: std::net::TcpListener) -> std::io::Result<Server> {
    use actix_web::{dev::Service, web::Data, App, HttpServer};
    use tracing::Instrument;
    let data = Data::new(state.clone());
    let https = state.config.secure_cookies();
    let record_metrics = state.config.metrics_enabled() && metrics::install().is_some();
    let config = state.config.clone();
    HttpServer::new(move || {
        let config = config.clone();
        App::new()
            .app_data(data.clone())
            .wrap_fn(move |req, srv| {
                let id = request_id::for_request(&req, &config.trusted_proxies);
                // One span per request, at info so that every line logged while serving it
                // carries the request id. Only method and path: query strings carry codes and
                // tokens.
                let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
                let started = std::time::Instant::now();
                let fut = span.in_scope(|| request_id::sync_scope(id.clone(), || srv.call(req)));
                async move {
                    let mut response = request_id::scope(id.clone(), fut).await?;
                    html::secure_response(response.headers_mut(), https);
                    if let Ok(value) = header::HeaderValue::from_str(&id) {
                        response.headers_mut().insert(header::HeaderName::from_static(request_id::HEADER), value);
                    }
                    let status = response.status().as_u16();
                    let elapsed = started.elapsed();
                    if record_metrics {
                        let request = response.request();
                        metrics::record_request(request.match_pattern().as_deref(), request.method(), status, elapsed);
                    }
                    let elapsed_ms = elapsed.as_millis() as u64;
                    // Per-request lines are debug (ATSSO_LOG=debug): at tens of thousands of
                    // requests per second, formatting them costs a third of the throughput.
                    if status >= 500 {
                        let request = response.request();
                        tracing::error!(method = %request.method(), path = %request.path(), status, elapsed_ms, "served");
                    } else {
                        tracing::debug!(status, elapsed_ms, "served");
                    }
                    Ok(response)
                }
                .instrument(span)
            })
            .configure(configure)
            .default_service(web::route().to(not_found))
    })
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
    .listen(listener)
    .map(|server| server.run())
}

/// The separate `/metrics` listener (`ATSSO_METRICS_BIND`).
pub(crate) fn serve_metrics(state: AppState, listener: std::net::TcpListener) -> std::io::Result<Server> {
    metrics::install();
    metrics::serve_metrics(state, listener)
}

/// Anything we do not serve: a readable page (JSON clients see the status).
pub(crate) async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&PageError::new(
        actix_web::http::StatusCode::NOT_FOUND,
        "Page not found",
        "There is nothing at this address.",
    ))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Ready for traffic (the load balancer's health check): the database answers and signing keys
/// are loaded. 503 with the reason otherwise.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (mut response, body) = match state.readiness().await {
        Ok(()) => (HttpResponse::Ok(), serde_json::json!({ "status": "ready" })),
        Err(reason) => {
            let cause = std::error::Error::source(&reason).map(ToString::to_string).unwrap_or_default();
            tracing::warn!(%reason, %cause, "not ready");
            (HttpResponse::ServiceUnavailable(), serde_json::json!({ "status": "not ready", "reason": reason.to_string() }))
        }
    };
    response.insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(crate::templates::STYLESHEET)
}

pub(crate) fn found(location: &str) -> HttpResponse {
    HttpResponse::Found().insert_header((header::LOCATION, location)).insert_header((header::CACHE_CONTROL, "no-store")).finish()
}

/// Back-channel endpoints take form bodies only (RFC 6749 §3.2).
pub(crate) fn form_params(req: &HttpRequest, body: &[u8]) -> Result<Params, OAuthError> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")));
    if !is_form {
        return Err(OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"));
    }
    let text = std::str::from_utf8(body).map_err(|_| OAuthError::invalid_request("the body is not UTF-8"))?;
    Params::parse(text).map_err(|e| OAuthError::invalid_request(e.to_string()))
}

/// The source address for the audit log.
pub(crate) fn audit_addr(state: &crate::state::AppState, req: &HttpRequest) -> Option<String> {
    Some(client_addr(req, &state.config.trusted_proxies).to_string())
}

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1), if any. The one Bearer
/// parser (userinfo, admin API, registration). Not actix-web-httpauth's: it matches the scheme
/// case-sensitively (RFC 7235 §2.1 says case-insensitive) and its Basic parser lacks the
/// RFC 6749 §2.3.1 form-decoding that client authentication needs (`oidc::clients`).
pub(crate) fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// The address a request came from: the TCP peer; only when the peer is a trusted proxy
/// (`ATSSO_TRUSTED_PROXIES`), the nearest address in `X-Forwarded-For` that is not one of ours.
/// This is the address of the audit log and of the rate limits.
pub(crate) fn client_addr(req: &HttpRequest, trusted_proxies: &[ipnet::IpNet]) -> std::net::IpAddr {
    let peer = req.peer_addr().map(|a| a.ip()).unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let forwarded: Vec<&str> = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok()).collect();
    source_address(peer, &forwarded.join(","), trusted_proxies)
}

/// `client_addr` without actix: walks `X-Forwarded-For` from the right while the hop is trusted.
pub(crate) fn source_address(peer: std::net::IpAddr, forwarded_for: &str, trusted_proxies: &[ipnet::IpNet]) -> std::net::IpAddr {
    let trusted = |ip: &std::net::IpAddr| trusted_proxies.iter().any(|net| net.contains(ip));
    let mut source = peer;
    if !trusted(&source) {
        return source;
    }
    for hop in forwarded_for.rsplit(',').map(str::trim).filter(|h| !h.is_empty()) {
        let Some(ip) = parse_hop(hop) else {
            break; // garbage from a client: the last trusted hop is as far as we can see
        };
        source = ip;
        if !trusted(&source) {
            break;
        }
    }
    source
}

/// `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80`.
fn parse_hop(hop: &str) -> Option<std::net::IpAddr> {
    hop.parse::<std::net::IpAddr>().ok().or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let proxies: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        // An untrusted peer's header is ignored.
        assert_eq!(source_address(ip("203.0.113.9"), "6.6.6.6", &proxies), ip("203.0.113.9"));
        assert_eq!(source_address(ip("127.0.0.1"), "6.6.6.6", &[]), ip("127.0.0.1"));
        // A trusted proxy: the nearest untrusted hop, not the client-supplied leftmost one.
        assert_eq!(source_address(ip("10.0.0.2"), "6.6.6.6, 198.51.100.7", &proxies), ip("198.51.100.7"));
        assert_eq!(source_address(ip("10.0.0.2"), "6.6.6.6, 198.51.100.7, 10.0.0.3", &proxies), ip("198.51.100.7"));
        assert_eq!(source_address(ip("10.0.0.2"), "[2001:db8::1]:4711", &proxies), ip("2001:db8::1"));
        // Garbage or nothing: the last trusted hop.
        assert_eq!(source_address(ip("10.0.0.2"), "", &proxies), ip("10.0.0.2"));
        assert_eq!(source_address(ip("10.0.0.2"), "6.6.6.6, unknown", &proxies), ip("10.0.0.2"));
    }

    proptest::proptest! {
        /// Whatever a client puts in X-Forwarded-For: no panic, an untrusted peer is the source,
        /// and behind a trusted proxy the source is either a hop of the header or the proxy.
        #[test]
        fn forwarded_for_never_panics_and_never_trusts_a_stranger(header in ".{0,200}", peer in proptest::arbitrary::any::<std::net::IpAddr>()) {
            let proxies: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
            let source = source_address(peer, &header, &proxies);
            if !proxies[0].contains(&peer) {
                proptest::prop_assert_eq!(source, peer);
            } else {
                proptest::prop_assert!(source == peer || header.split(',').filter_map(|h| parse_hop(h.trim())).any(|h| h == source));
            }
        }
    }
}
