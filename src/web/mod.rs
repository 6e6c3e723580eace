//! HTTP glue: routes, extractors and responses. Handlers are thin: parse, call a plain
//! function of the protocol modules, turn its outcome into a response.
mod atproto;
mod logout;
mod oidc;
mod pages;

use actix_web::{http::header, web, HttpRequest, HttpResponse};

use crate::{
    error::{OAuthError, PageError},
    oidc::params::Params,
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
        .route("/assets/style.css", web::get().to(stylesheet));
    oidc::configure(cfg);
    pages::configure(cfg);
    atproto::configure(cfg);
    logout::configure(cfg);
    crate::admin::api::configure(cfg);
    crate::admin::ui::configure(cfg);
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
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
