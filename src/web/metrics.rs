//! `/metrics` in the Prometheus text format. Never public by default: served on a separate
//! listener (`ATSSO_METRICS_BIND`) and/or on the main one behind a bearer token
//! (`ATSSO_METRICS_TOKEN`); otherwise the route answers 404 and nothing is recorded.
//!
//! The series are recorded through the `metrics` facade wherever they happen (the request
//! middleware here, token issue, logins, upstream calls); this module installs the one recorder
//! of the process and renders it.
use std::{sync::OnceLock, time::Duration};

use actix_web::{web, HttpRequest, HttpResponse};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

/// Request latency buckets (seconds): from cached reads to slow logins with outbound fetches.
const HTTP_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Upstream (PDS/AS) latency buckets: network round trips up to the 10 s client timeout.
const UPSTREAM_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// How often histogram samples are folded into their buckets between scrapes (bounds memory).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once (tests start many apps in one process) and returns
/// its handle; `None` when another recorder was installed first.
pub(crate) fn install() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("atsso_http_request_duration_seconds".into()), HTTP_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("atsso_upstream_request_duration_seconds".into()), UPSTREAM_BUCKETS));
            let handle = match builder.map(|b| b.install_recorder()) {
                Ok(Ok(handle)) => handle,
                Ok(Err(error)) | Err(error) => {
                    tracing::error!(%error, "cannot install the metrics recorder; /metrics stays empty");
                    return None;
                }
            };
            describe();
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new().name("atsso-metrics-upkeep".into()).spawn(move || loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            });
            if let Err(error) = spawned {
                tracing::warn!(%error, "no metrics upkeep thread; histograms are folded at scrape time only");
            }
            Some(handle)
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("atsso_http_requests_total", "HTTP requests by matched route, method and status");
    describe_histogram!("atsso_http_request_duration_seconds", Unit::Seconds, "HTTP request latency by matched route");
    describe_counter!("atsso_tokens_issued_total", "Token responses issued by grant type");
    describe_counter!("atsso_refresh_reuse_detected_total", "Reuses of a rotated refresh token (each revokes its family)");
    describe_counter!("atsso_logins_total", "ATProto logins started, completed and failed (by reason)");
    describe_counter!("atsso_upstream_requests_total", "Requests to PDSes, authorization servers and resolvers by endpoint and outcome");
    describe_histogram!("atsso_upstream_request_duration_seconds", Unit::Seconds, "Upstream request latency by endpoint");
    describe_gauge!("atsso_db_pool_connections", "Database pool connections by state (sampled at scrape)");
    describe_gauge!("atsso_db_pool_max_connections", "Database pool size limit");
}

/// The text exposition, with the pool gauges sampled now.
fn render(state: &AppState) -> String {
    let Some(handle) = install() else {
        return String::new();
    };
    let pool = state.store.pool_usage();
    metrics::gauge!("atsso_db_pool_connections", "state" => "in_use").set(f64::from(pool.in_use));
    metrics::gauge!("atsso_db_pool_connections", "state" => "idle").set(f64::from(pool.idle));
    metrics::gauge!("atsso_db_pool_max_connections").set(f64::from(pool.max));
    handle.render()
}

fn exposition(state: &AppState) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .body(render(state))
}

/// `/metrics` on the main listener: only with the configured bearer token; otherwise it does
/// not exist (404, so a scan learns nothing).
pub(crate) async fn main_listener_metrics(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let Some(expected) = &state.config.metrics_token else {
        return super::not_found().await;
    };
    let presented = super::bearer_token(&req).unwrap_or_default();
    if !crate::crypto::constant_time_eq(presented.as_bytes(), expected.expose().as_bytes()) {
        return super::not_found().await;
    }
    exposition(&state)
}

/// The separate metrics listener (`ATSSO_METRICS_BIND`): `/metrics` only, no token (bind it to
/// an address only the scraper reaches).
pub(crate) fn serve_metrics(state: AppState, listener: std::net::TcpListener) -> std::io::Result<super::Server> {
    use actix_web::{App, HttpServer};
    let data = web::Data::new(state);
    HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/metrics", web::get().to(|state: web::Data<AppState>| async move { exposition(&state) }))
            .default_service(web::route().to(super::not_found))
    })
    .workers(1)
    // The main server owns the signals; this one is stopped after it (Application::run_until_stopped).
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)
    .map(|server| server.run())
}

/// One request's series: by matched route pattern (bounded: never the raw path), method and
/// status.
pub(crate) fn record_request(route: Option<&str>, method: &actix_web::http::Method, status: u16, elapsed: Duration) {
    let route = route.unwrap_or("unmatched").to_owned();
    metrics::counter!("atsso_http_requests_total", "route" => route.clone(), "method" => method_label(method), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("atsso_http_request_duration_seconds", "route" => route).record(elapsed.as_secs_f64());
}

/// Standard methods by name, anything else as `other` (a client picks the method).
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_a_bounded_label() {
        assert_eq!(method_label(&actix_web::http::Method::GET), "GET");
        assert_eq!(method_label(&actix_web::http::Method::from_bytes(b"FOOBAR").unwrap()), "other");
    }
}
