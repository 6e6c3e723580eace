//! Provider endpoints (paths and `/api/auth/...` aliases from DESIGN.md).
use actix_web::{http::header, web, HttpRequest, HttpResponse};

use super::session;
use super::{bearer_token, form_params, found};
use crate::{
    error::{BearerError, OAuthError, PageError},
    oidc::{
        authorize::{self, AuthorizeError, Outcome},
        clients::authenticate_client,
        params::Params,
        revocation, token, userinfo,
    },
    state::AppState,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/openid-configuration", web::get().to(discovery))
        .route("/.well-known/jwks.json", web::get().to(jwks))
        .route("/api/auth/jwks", web::get().to(jwks));
    for prefix in ["/oauth2", "/api/auth/oauth2"] {
        cfg.route(&format!("{prefix}/authorize"), web::get().to(authorize_get))
            .route(&format!("{prefix}/authorize"), web::post().to(authorize_post))
            .route(&format!("{prefix}/token"), web::post().to(token_endpoint))
            .route(&format!("{prefix}/userinfo"), web::get().to(userinfo_get))
            .route(&format!("{prefix}/userinfo"), web::post().to(userinfo_post))
            .route(&format!("{prefix}/revoke"), web::post().to(revoke_endpoint))
            .route(&format!("{prefix}/introspect"), web::post().to(introspect_endpoint));
        // Registered after the POST routes: any other method of these paths.
        for endpoint in ["token", "revoke", "introspect"] {
            cfg.route(&format!("{prefix}/{endpoint}"), web::route().to(post_only));
        }
    }
}

/// RFC 9110 §15.5.6: 405 with the methods the endpoint does accept.
async fn post_only() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, "POST"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "error": "invalid_request", "error_description": "this endpoint accepts POST only" }))
}

async fn discovery(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .body(state.discovery_json.clone())
}

async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        // Short enough that every cache has a rotated key before it signs (Config::jwks_max_age_secs).
        .insert_header((header::CACHE_CONTROL, format!("public, max-age={}", state.config.jwks_max_age_secs())))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .body(state.keys.current().jwks_json())
}

async fn authorize_get(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    authorize_with(&state, &req, req.query_string()).await
}

async fn authorize_post(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, PageError> {
    let text = std::str::from_utf8(&body).map_err(|_| PageError::bad_request("Invalid request", "The request is not valid UTF-8."))?;
    authorize_with(&state, &req, text).await
}

#[tracing::instrument(name = "authorize", skip_all)]
async fn authorize_with(state: &AppState, req: &HttpRequest, encoded: &str) -> Result<HttpResponse, PageError> {
    let params = Params::parse(encoded).map_err(|e| PageError::bad_request("Invalid sign-in request", e.to_string()))?;
    let (request, client) = match authorize::validate(state, &params).await {
        Ok(valid) => valid,
        Err(AuthorizeError::Redirect(url)) => return Ok(found(&url)),
        Err(refused) => return Err(refused.into()),
    };
    let session = session::current_session(state, req).await?;
    if session.is_none() && !request.prompt_none {
        // Without a session the request is stored while the user signs in: bounded per address.
        state.limits.authorize.check(&super::client_addr(req, &state.config.trusted_proxies)).map_err(PageError::rate_limited)?;
    }
    outcome_response(authorize::decide(state, &request, &client, session.as_ref(), None, authorize::UpstreamAsk::MayStepUp).await)
}

pub(crate) fn outcome_response(outcome: Result<Outcome, AuthorizeError>) -> Result<HttpResponse, PageError> {
    match outcome {
        Ok(Outcome::Redirect(url)) | Err(AuthorizeError::Redirect(url)) => Ok(found(&url)),
        // A step-up is a sign-in at the PDS too: the login page explains why and offers it.
        Ok(Outcome::Login { request_id }) | Ok(Outcome::StepUp { request_id }) => Ok(found(&format!("/login?request_id={request_id}"))),
        Ok(Outcome::Consent { request_id }) => Ok(found(&format!("/consent?request_id={request_id}"))),
        Err(other) => Err(other.into()),
    }
}

fn no_store_json(body: impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).insert_header((header::PRAGMA, "no-cache")).json(body)
}

#[tracing::instrument(name = "token", skip_all)]
async fn token_endpoint(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, OAuthError> {
    let params = form_params(&req, &body)?;
    let client = authenticate_client(&state, authorization(&req), &params, super::client_addr(&req, &state.config.trusted_proxies)).await?;
    let response = token::exchange(&state, &client, &params).await?;
    Ok(no_store_json(response))
}

#[tracing::instrument(name = "revoke", skip_all)]
async fn revoke_endpoint(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, OAuthError> {
    let params = form_params(&req, &body)?;
    let client = authenticate_client(&state, authorization(&req), &params, super::client_addr(&req, &state.config.trusted_proxies)).await?;
    revocation::revoke(&state, &client, &params).await?;
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).finish())
}

#[tracing::instrument(name = "introspect", skip_all)]
async fn introspect_endpoint(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, OAuthError> {
    let params = form_params(&req, &body)?;
    let client = authenticate_client(&state, authorization(&req), &params, super::client_addr(&req, &state.config.trusted_proxies)).await?;
    Ok(no_store_json(revocation::introspect(&state, &client, &params).await?))
}

/// The raw `Authorization` header (client authentication parses it).
fn authorization(req: &HttpRequest) -> Option<&[u8]> {
    req.headers().get(header::AUTHORIZATION).map(|value| value.as_bytes())
}

#[tracing::instrument(name = "userinfo", skip_all)]
async fn userinfo_get(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, BearerError> {
    let token = bearer_token(&req).ok_or_else(|| BearerError::invalid_token("a Bearer access token is required"))?;
    Ok(no_store_json(userinfo::userinfo(&state, &token).await?))
}

#[tracing::instrument(name = "userinfo", skip_all)]
async fn userinfo_post(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, BearerError> {
    let token = match bearer_token(&req) {
        Some(token) => token,
        None => form_params(&req, &body)
            .ok()
            .and_then(|p| p.get("access_token").map(String::from))
            .ok_or_else(|| BearerError::invalid_token("a Bearer access token is required"))?,
    };
    Ok(no_store_json(userinfo::userinfo(&state, &token).await?))
}
