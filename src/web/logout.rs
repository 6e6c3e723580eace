//! Logout: the OIDC end-session endpoint and the user-facing /logout page.
use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use tera::Context;

use super::session;
use super::{found, html::PagePolicy};
use crate::{
    error::PageError,
    oidc::{end_session::LogoutRequest, params::Params},
    sso::logout::end_session,
    state::AppState,
    templates,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    for path in ["/oauth2/end_session", "/api/auth/oauth2/endsession"] {
        cfg.route(path, web::get().to(end_session_get)).route(path, web::post().to(end_session_post));
    }
    cfg.route("/logout", web::get().to(logout_page)).route("/logout", web::post().to(logout_submit));
}

async fn end_session_get(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    end_session_with(&state, &req, req.query_string()).await
}

async fn end_session_post(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, PageError> {
    let text = std::str::from_utf8(&body).map_err(|_| PageError::bad_request("Invalid request", "The request is not valid UTF-8."))?;
    end_session_with(&state, &req, text).await
}

#[tracing::instrument(name = "end_session", skip_all)]
async fn end_session_with(state: &AppState, req: &HttpRequest, encoded: &str) -> Result<HttpResponse, PageError> {
    let params = Params::parse(encoded).map_err(|e| PageError::bad_request("Invalid sign-out request", e.to_string()))?;
    let request = crate::oidc::end_session::validate(state, &params).await?;
    // A valid hint naming this browser's own session: the app asks for the logout of the person
    // in front of it, no confirmation needed. Anything else (no hint, or a hint for a session this
    // browser does not hold: a leaked ID token must not log anyone out) is confirmed first.
    let browser_session = session::cookie_session(state, req).await?;
    if let (Some(sid), Some(session)) = (request.hint_sid.as_deref(), browser_session.as_ref()) {
        if session.sid == sid {
            let ended = end_session(state, sid).await?;
            return Ok(logged_out(state, &request, ended.frontchannel_urls, true));
        }
    }
    confirmation_page(state, req, &request)
}

fn confirmation_page(state: &AppState, req: &HttpRequest, request: &LogoutRequest) -> Result<HttpResponse, PageError> {
    let (csrf, cookie) = session::csrf_token(state, req);
    let mut context = Context::new();
    context.insert("csrf_token", &csrf);
    let sealed = request.seal(state).ok_or_else(|| PageError::internal(&"sealing a logout request failed"))?;
    context.insert("logout_request_id", &sealed);
    if let Some(name) = &request.client_name {
        context.insert("client_name", name);
    }
    let policy = request.post_logout_redirect_uri.as_deref().map(PagePolicy::form_target).unwrap_or_default();
    Ok(super::html::page(StatusCode::OK, templates::render("logout_confirm.html", &context), cookie.into_iter().collect(), &policy))
}

/// The end of every logout: a redirect to the app when it asked for one and no front-channel
/// iframes must load, otherwise our logged-out page.
fn logged_out(state: &AppState, request: &LogoutRequest, frontchannel_urls: Vec<String>, clear_cookie: bool) -> HttpResponse {
    let mut response = match (request.redirect(), frontchannel_urls.is_empty()) {
        (Some(url), true) => found(&url),
        (redirect, _) => {
            let mut context = Context::new();
            context.insert("frontchannel_logout_urls", &frontchannel_urls);
            if let Some(url) = redirect {
                context.insert("post_logout_redirect_uri", &url);
            }
            let policy = PagePolicy {
                frame_sources: frontchannel_urls.iter().filter_map(|url| super::html::origin(url)).collect(),
                ..Default::default()
            };
            super::html::page(StatusCode::OK, templates::render("logged_out.html", &context), Vec::new(), &policy)
        }
    };
    if clear_cookie {
        let _ = response.add_cookie(&session::clear_session_cookie(&state.config));
    }
    response
}

async fn logout_page(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    if session::cookie_session(&state, &req).await?.is_none() {
        return Ok(logged_out(&state, &LogoutRequest::default(), Vec::new(), true));
    }
    confirmation_page(&state, &req, &LogoutRequest { expires_at: crate::clock::now() + 900, ..Default::default() })
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf_token: Option<String>,
    logout_request_id: Option<String>,
    decision: Option<String>,
}

#[tracing::instrument(name = "logout", skip_all)]
async fn logout_submit(state: web::Data<AppState>, req: HttpRequest, form: web::Form<LogoutForm>) -> Result<HttpResponse, PageError> {
    if !session::csrf_valid(&state, &req, form.csrf_token.as_deref()) {
        if session::cookie_session(&state, &req).await?.is_none() && form.decision.as_deref() == Some("logout") {
            // Nothing to end (e.g. the form sent twice: the first ended the session the token was
            // bound to): the outcome the user asked for, and nothing done.
            return Ok(logged_out(&state, &LogoutRequest::default(), Vec::new(), true));
        }
        return Err(PageError::bad_request("Please try again", "The form expired or was not sent from this site."));
    }
    let request = match form.logout_request_id.as_deref().filter(|s| !s.is_empty()) {
        Some(sealed) => LogoutRequest::unseal(&state, sealed)
            .ok_or_else(|| PageError::bad_request("This sign-out request has expired", "Go back to the app and sign out again."))?,
        None => LogoutRequest::default(),
    };
    match form.decision.as_deref() {
        Some("logout") => {
            // Only the browser's own session ends. The hint chose the app and where to go next;
            // it never names whose session ends (a leaked ID token must not log anyone out).
            let mut frontchannel_urls = Vec::new();
            if let Some(session) = session::cookie_session(&state, &req).await? {
                // Already ended sessions (a replayed form) yield nothing more.
                frontchannel_urls = end_session(&state, &session.sid).await?.frontchannel_urls;
            }
            Ok(logged_out(&state, &request, frontchannel_urls, true))
        }
        Some("cancel") => Ok(found("/")),
        _ => Err(PageError::bad_request("Invalid choice", "Choose whether to sign out.")),
    }
}
