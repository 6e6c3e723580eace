//! RFC 7591 dynamic client registration at `/oauth2/register` (behind
//! `ATSSO_DYNAMIC_REGISTRATION=true` and an initial access token): the HTTP side of
//! `admin::registration`.
use actix_web::{
    http::{header, StatusCode},
    web, HttpRequest, HttpResponse,
};
use serde_json::json;

use super::{audit_addr, bearer_token};
use crate::{
    admin::{
        auth::{self, TokenError, TokenKind},
        registration, Actor,
    },
    error::ApiError,
    state::AppState,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/oauth2/register", web::post().to(dynamic_register));
}

fn registration_error(status: StatusCode, code: &str, description: &str) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    response.insert_header((header::CACHE_CONTROL, "no-store"));
    if status == StatusCode::UNAUTHORIZED {
        response.insert_header((header::WWW_AUTHENTICATE, format!("Bearer realm=\"atsso\", error=\"{code}\"")));
    }
    response.json(json!({ "error": code, "error_description": description }))
}

/// RFC 7591 §3: POST /oauth2/register with an initial access token.
#[tracing::instrument(name = "dynamic_registration", skip_all)]
async fn dynamic_register(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if !state.config.dynamic_registration {
        return registration_error(StatusCode::NOT_FOUND, "not_found", "dynamic client registration is turned off");
    }
    let source = crate::web::client_addr(&req, &state.config.trusted_proxies);
    let limited = state.limits.registration.check(&source).and_then(|()| state.limits.admin_auth_by_addr.check(&source));
    if let Err(limited) = limited {
        return actix_web::ResponseError::error_response(&ApiError::rate_limited(limited));
    }
    let Some(presented) = bearer_token(&req) else {
        return registration_error(StatusCode::UNAUTHORIZED, "invalid_token", "an initial access token is required");
    };
    let token = match auth::verify_token(&state.store, &state.secrets, &presented, &[TokenKind::Registration, TokenKind::Admin]).await {
        Ok(token) => token,
        Err(TokenError::Busy) => return actix_web::ResponseError::error_response(&ApiError::from(TokenError::Busy)),
        Err(TokenError::Store(e)) => {
            let error_id = crate::error::log_internal(&e);
            return registration_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                &format!("internal error (reference {error_id})"),
            );
        }
        Err(_) => {
            state.limits.admin_auth_by_addr.record_failure(&source);
            return registration_error(StatusCode::UNAUTHORIZED, "invalid_token", "the initial access token is not valid");
        }
    };
    let request: registration::RegistrationRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return registration_error(StatusCode::BAD_REQUEST, "invalid_client_metadata", &format!("invalid JSON: {e}")),
    };
    let actor = Actor::new(token.actor_name(), audit_addr(&state, &req));
    match registration::register(&state, &actor, request).await {
        Ok(body) => HttpResponse::Created().insert_header((header::CACHE_CONTROL, "no-store")).json(body),
        Err(refused) if refused.code == "server_error" => {
            registration_error(StatusCode::INTERNAL_SERVER_ERROR, refused.code, &refused.description)
        }
        Err(refused) => registration_error(StatusCode::BAD_REQUEST, refused.code, &refused.description),
    }
}
