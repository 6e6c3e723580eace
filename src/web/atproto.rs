//! The ATProto side of our pages: the login form's submission, the PDS callback, and the
//! documents the PDS fetches about us (client metadata, client JWKS).
use actix_web::{http::header, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::session;
use super::{found, oidc::outcome_response, pages::render_login};
use crate::{
    atproto::{AtprotoError, CallbackParams},
    error::PageError,
    oidc::authorize,
    sso::upstream::{self, EstablishedSessionOrExisting, LoginError},
    state::AppState,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::post().to(login_submit))
        .route("/atproto/callback", web::get().to(callback))
        .route("/atproto/client-metadata.json", web::get().to(client_metadata))
        .route("/atproto/jwks.json", web::get().to(client_jwks));
}

/// Declares every scope a login may ask for: ours plus what any enabled client may ask for.
async fn client_metadata(state: web::Data<AppState>) -> Result<HttpResponse, PageError> {
    let permissions = state.store.allowed_atproto_permissions_union().await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(state.atproto.client_metadata_document(&permissions)))
}

async fn client_jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "public, max-age=300")).json(state.atproto.client_jwks())
}

#[derive(Deserialize)]
struct LoginForm {
    handle: Option<String>,
    request_id: Option<String>,
    csrf_token: Option<String>,
}

#[tracing::instrument(name = "login", skip_all)]
async fn login_submit(state: web::Data<AppState>, req: HttpRequest, form: web::Form<LoginForm>) -> Result<HttpResponse, PageError> {
    // Each attempt costs DNS and up to six outbound fetches: bounded per address.
    state.limits.login.check(&super::client_addr(&req, &state.config.trusted_proxies)).map_err(PageError::rate_limited)?;
    let request_id = form.request_id.as_deref().filter(|id| !id.is_empty());
    let handle = form.handle.as_deref().map(str::trim).unwrap_or("");
    if !session::csrf_valid(&state, &req, form.csrf_token.as_deref()) {
        return render_login(&state, &req, request_id, Some("The form expired. Please try again."), Some(handle)).await;
    }
    if handle.is_empty() {
        return render_login(&state, &req, request_id, Some("Enter your handle, for example alice.bsky.social."), None).await;
    }
    if handle.len() > 512 {
        return render_login(&state, &req, request_id, Some(&AtprotoError::InvalidInput(String::new()).user_message()), None).await;
    }
    // What the user's PDS is asked for besides the configured scope: the atproto permissions
    // the waiting app needs, plus, when the same account signs in again (a step-up), those its
    // current grant holds for other apps (the new grant replaces it).
    let mut permissions = Vec::new();
    if let Some(id) = request_id {
        let Some((request, _)) = authorize::load_parked(&state, id).await? else {
            return Err(PageError::bad_request(
                "This sign-in request has expired",
                "Go back to the app you came from and start signing in again.",
            ));
        };
        permissions = request.upstream_permissions();
    }
    if let Some(current) = session::current_session(&state, &req).await? {
        if current.did == handle {
            for held in upstream::upstream_permissions(&state, &current.sid).await?.unwrap_or_default() {
                let held = held.to_string();
                if !permissions.contains(&held) {
                    permissions.push(held);
                }
            }
        }
    }
    // csrf_valid guarantees a browser id we issued; it binds the login to this browser.
    let browser_id = session::browser_id(&state, &req).unwrap_or_default();
    match upstream::begin_login(&state, handle, request_id, &browser_id, &permissions).await {
        Ok(authorization_url) => {
            metrics::counter!("atsso_logins_total", "outcome" => "started", "reason" => "").increment(1);
            Ok(found(&authorization_url))
        }
        Err(error) => {
            log_login_failure(&error);
            render_login(&state, &req, request_id, Some(&error.user_message()), Some(handle)).await
        }
    }
}

/// Logs a refused or failed login and counts it by kind.
fn log_login_failure(error: &LoginError) {
    count_failed_login(error.kind());
    match error {
        LoginError::Store(_) | LoginError::Seal(_) => tracing::error!(%error, "sign-in failed"),
        _ => tracing::info!(%error, "sign-in refused"),
    }
}

#[tracing::instrument(name = "atproto_callback", skip_all)]
async fn callback(state: web::Data<AppState>, req: HttpRequest, query: web::Query<CallbackParams>) -> Result<HttpResponse, PageError> {
    let params = query.into_inner();
    let Some(login_state) = params.state.as_deref() else {
        return Err(PageError::bad_request("Sign-in failed", "The response from your provider is incomplete. Please start again."));
    };
    let browser_id = session::browser_id(&state, &req);
    let taken = match upstream::take_login(&state, login_state, browser_id.as_deref()).await {
        Ok(taken) => taken,
        Err(error) => {
            log_login_failure(&error);
            return Err(PageError::bad_request("Sign-in failed", error.user_message()));
        }
    };
    let request_id = taken.request_id.clone();

    // The user said no at their PDS: the app learns `access_denied`.
    if params.error.as_deref() == Some("access_denied") {
        count_failed_login("access_denied");
        if let Some(id) = request_id.as_deref() {
            if let Some((request, _)) = authorize::load_parked(&state, id).await? {
                return Ok(found(&authorize::deny(&state, id, &request, "the user cancelled the sign-in").await?));
            }
        }
        return render_login(&state, &req, None, Some("Sign-in was cancelled."), None).await;
    }

    let current = session::cookie_session(&state, &req).await?;
    let established = match upstream::finish_login(&state, &taken, &params, current).await {
        Ok(established) => established,
        Err(error) => {
            log_login_failure(&error);
            // The pending app request is kept, so the user can try again.
            return render_login(&state, &req, request_id.as_deref(), Some(&error.user_message()), taken.pending.handle.as_deref()).await;
        }
    };
    let session = established.session().clone();
    metrics::counter!("atsso_logins_total", "outcome" => "completed", "reason" => "").increment(1);
    let remote_addr = Some(super::client_addr(&req, &state.config.trusted_proxies).to_string());
    crate::audit::login(&state.store, &session.did, remote_addr).await;
    let mut response = match request_id.as_deref() {
        Some(id) => match authorize::load_parked(&state, id).await? {
            Some((request, client)) => outcome_response(
                authorize::decide(&state, &request, &client, Some(&session), Some(id), authorize::UpstreamAsk::JustAsked).await,
            )?,
            None => found("/"),
        },
        None => found("/"),
    };
    if let EstablishedSessionOrExisting::New(new) = &established {
        response.add_cookie(&session::session_cookie(&state.config, &new.cookie_value)).map_err(|e| PageError::internal(&e))?;
    }
    Ok(response)
}

fn count_failed_login(reason: &'static str) {
    metrics::counter!("atsso_logins_total", "outcome" => "failed", "reason" => reason).increment(1);
}
