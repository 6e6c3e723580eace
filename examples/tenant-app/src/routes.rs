//! HTTP: the routes and thin handlers that read the request, call `auth`, and answer.
use actix_web::{
    cookie::{time::Duration as CookieDuration, Cookie, SameSite},
    http::header,
    web, HttpRequest, HttpResponse,
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    auth::{self, BackchannelError, CallbackParams},
    error::AppError,
    pages,
    state::AppState,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home))
        .route("/userinfo", web::get().to(userinfo))
        .route("/login", web::get().to(login))
        .route("/callback", web::get().to(callback))
        .route("/logout", web::post().to(logout))
        .route("/backchannel-logout", web::post().to(backchannel_logout));
}

#[derive(Default, Deserialize)]
struct HomeQuery {
    state: Option<String>,
}

async fn home(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let query = web::Query::<HomeQuery>::from_query(req.query_string()).map(web::Query::into_inner).unwrap_or_default();
    let id = session_id(&state, &req);
    let session = id.as_deref().and_then(|id| state.sessions.get(id));
    if let Some(login) = session.as_ref().and_then(|s| s.login.as_ref()) {
        return page(pages::home(&pages::Home { app_name: &state.settings.app_name, claims: Some(&login.claims), userinfo: None, notice: None }));
    }
    // Back from atsso's end-session endpoint with the state we sent.
    let signed_out = match (&session, &query.state) {
        (Some(s), Some(returned)) => s.logout_state.as_deref() == Some(returned.as_str()),
        _ => false,
    };
    let notice = signed_out.then_some("You are signed out of every app that uses this atsso.");
    let mut response = page(pages::home(&pages::Home { app_name: &state.settings.app_name, claims: None, userinfo: None, notice }));
    if let (true, Some(id)) = (signed_out, id) {
        state.sessions.remove(&id);
        let _ = response.add_removal_cookie(&session_cookie(&state, String::new()));
    }
    response
}

async fn userinfo(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let session = session_id(&state, &req).and_then(|id| state.sessions.get(&id));
    let Some(login) = session.and_then(|s| s.login) else {
        return redirect("/");
    };
    let result = match state.provider().await {
        Ok(provider) => provider.userinfo(&login.access_token, &login.claims.sub).await,
        Err(error) => Err(error.detail),
    };
    page(pages::home(&pages::Home { app_name: &state.settings.app_name, claims: Some(&login.claims), userinfo: Some(result), notice: None }))
}

async fn login(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match auth::begin_login(&state, session_id(&state, &req).as_deref()).await {
        Ok((url, id)) => with_session(redirect(&url), &state, id),
        Err(error) => error_page(&state, error),
    }
}

async fn callback(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let params = web::Query::<CallbackParams>::from_query(req.query_string()).map(web::Query::into_inner).unwrap_or_default();
    match auth::finish_login(&state, session_id(&state, &req).as_deref(), params).await {
        Ok(id) => with_session(redirect("/"), &state, id),
        Err(error) => error_page(&state, error),
    }
}

async fn logout(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match auth::begin_logout(&state, session_id(&state, &req).as_deref()).await {
        Ok(Some((url, id))) => with_session(redirect(&url), &state, id),
        Ok(None) => {
            let mut response = redirect("/");
            let _ = response.add_removal_cookie(&session_cookie(&state, String::new()));
            response
        }
        Err(error) => {
            let mut response = error_page(&state, AppError { detail: format!("You are signed out of this app, but not of the others: {}", error.detail), ..error });
            let _ = response.add_removal_cookie(&session_cookie(&state, String::new()));
            response
        }
    }
}

#[derive(Deserialize)]
struct BackchannelForm {
    logout_token: String,
}

/// Back-Channel Logout 1.0 §2.8: 200 when done, 400 with an error for a bad request.
async fn backchannel_logout(state: web::Data<AppState>, form: Result<web::Form<BackchannelForm>, actix_web::Error>) -> HttpResponse {
    let Ok(form) = form else {
        return backchannel_error(400, "logout_token is required");
    };
    match auth::backchannel_logout(&state, &form.logout_token).await {
        Ok(_) => HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).finish(),
        Err(BackchannelError::BadToken(reason)) => {
            tracing::warn!(%reason, "refused a logout token");
            backchannel_error(400, &reason)
        }
        Err(BackchannelError::Unavailable) => backchannel_error(503, "atsso's keys are not available"),
    }
}

fn backchannel_error(status: u16, description: &str) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({ "error": "invalid_request", "error_description": description }))
}

fn session_id(state: &AppState, req: &HttpRequest) -> Option<String> {
    req.cookie(&state.cookie_name).map(|c| c.value().to_owned()).filter(|v| !v.is_empty())
}

fn session_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build(state.cookie_name.clone(), value)
        .path("/")
        .http_only(true)
        .secure(state.settings.secure_cookies())
        // Lax: the cookie must come along on the top-level redirect back from atsso.
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::hours(8))
        .finish()
}

fn with_session(mut response: HttpResponse, state: &AppState, id: String) -> HttpResponse {
    let _ = response.add_cookie(&session_cookie(state, id));
    response
}

fn redirect(location: &str) -> HttpResponse {
    HttpResponse::Found().insert_header((header::LOCATION, location)).insert_header((header::CACHE_CONTROL, "no-store")).finish()
}

fn page(html: String) -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").insert_header((header::CACHE_CONTROL, "no-store")).body(html)
}

fn error_page(state: &AppState, error: AppError) -> HttpResponse {
    HttpResponse::build(error.status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(pages::error(&state.settings.app_name, error.title, &error.detail))
}
