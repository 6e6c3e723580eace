//! Pages for people: login, consent, signed-in. (The login form's submission to the user's PDS
//! lives with the ATProto client.)
use actix_web::{cookie::Cookie, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use tera::Context;

use super::session;
use super::{found, html::PagePolicy, oidc::outcome_response};
use crate::{
    error::PageError,
    oidc::{
        authorize::{self, Outcome},
        claims::consent_descriptions,
    },
    sso,
    state::AppState,
    store::users::UserProfile,
    templates,
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home))
        .route("/login", web::get().to(login_page))
        .route("/consent", web::get().to(consent_page))
        .route("/consent", web::post().to(consent_submit));
}

/// A page whose forms post only to us.
pub(crate) fn html(body: String, cookies: Vec<Cookie<'static>>) -> HttpResponse {
    super::html::page(actix_web::http::StatusCode::OK, body, cookies, &PagePolicy::default())
}

/// The login form leads (through our redirect) to the user's own authorization server, which can
/// be any https origin (plain-http loopback ones only in development with
/// ATSSO_ALLOW_INSECURE_LOOPBACK_UPSTREAM).
fn login_policy(state: &AppState) -> PagePolicy {
    let mut form_targets = vec!["https:".to_owned()];
    if state.config.allow_insecure_loopback_upstream {
        form_targets.extend(["http://localhost:*".to_owned(), "http://127.0.0.1:*".to_owned()]);
    }
    PagePolicy { form_targets, ..Default::default() }
}

fn expired_request() -> PageError {
    PageError::bad_request("This sign-in request has expired", "Go back to the app you came from and start signing in again.")
}

#[derive(Deserialize)]
struct RequestQuery {
    request_id: Option<String>,
}

async fn home(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    match session::current_session(&state, &req).await? {
        Some(session) => signed_in_page(&state, &req, &session.did).await,
        None => Ok(found("/login")),
    }
}

async fn signed_in_page(state: &AppState, req: &HttpRequest, did: &str) -> Result<HttpResponse, PageError> {
    let user = sso::user_profile(state, did).await?;
    let (csrf, cookie) = session::csrf_token(state, req);
    let mut context = Context::new();
    context.insert("user_did", did);
    if let Some(handle) = user.and_then(|u| u.handle) {
        context.insert("user_handle", &handle);
    }
    context.insert("csrf_token", &csrf);
    Ok(html(templates::render("signed_in.html", &context), cookie.into_iter().collect()))
}

/// Renders the login form, optionally with an error and the handle typed before.
pub(crate) async fn render_login(
    state: &AppState,
    req: &HttpRequest,
    request_id: Option<&str>,
    error: Option<&str>,
    handle: Option<&str>,
) -> Result<HttpResponse, PageError> {
    let (csrf, cookie) = session::csrf_token(state, req);
    let mut context = Context::new();
    context.insert("csrf_token", &csrf);
    if let Some(id) = request_id {
        context.insert("request_id", id);
        if let Some((_, client)) = authorize::load_parked(state, id).await? {
            context.insert("client_name", &client.name);
        }
    }
    if let Some(error) = error {
        context.insert("error", error);
    }
    if let Some(handle) = handle {
        context.insert("handle", handle);
    }
    let mut response = super::html::page(
        actix_web::http::StatusCode::OK,
        templates::render("login.html", &context),
        cookie.into_iter().collect(),
        &login_policy(state),
    );
    if error.is_some() {
        *response.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

/// The login form for a signed-in user whose app needs atproto permissions their upstream grant
/// lacks: filled in with their account, listing what their PDS will be asked for.
async fn render_step_up(
    state: &AppState,
    req: &HttpRequest,
    request_id: &str,
    request: &authorize::AuthorizationRequest,
    session: &crate::store::sessions::SsoSession,
) -> Result<HttpResponse, PageError> {
    let (csrf, cookie) = session::csrf_token(state, req);
    let mut context = Context::new();
    context.insert("csrf_token", &csrf);
    context.insert("request_id", request_id);
    if let Some((_, client)) = authorize::load_parked(state, request_id).await? {
        context.insert("client_name", &client.name);
    }
    // The DID, not the handle: the step-up must come back as the same account.
    context.insert("handle", &session.did);
    context.insert("step_up", &permission_descriptions(&request.upstream_permissions()));
    Ok(super::html::page(
        actix_web::http::StatusCode::OK,
        templates::render("login.html", &context),
        cookie.into_iter().collect(),
        &login_policy(state),
    ))
}

/// What each atproto permission allows, in words for people.
fn permission_descriptions(permissions: &[String]) -> Vec<String> {
    permissions
        .iter()
        .filter_map(|p| crate::atproto::permission::Permission::parse(p).ok())
        .map(|p| crate::atproto::permission::describe(&p))
        .collect()
}

async fn login_page(state: web::Data<AppState>, req: HttpRequest, query: web::Query<RequestQuery>) -> Result<HttpResponse, PageError> {
    let session = session::current_session(&state, &req).await?;
    let Some(request_id) = query.request_id.as_deref() else {
        return match session {
            Some(session) => signed_in_page(&state, &req, &session.did).await,
            None => render_login(&state, &req, None, None, None).await,
        };
    };
    let Some((request, client)) = authorize::load_parked(&state, request_id).await? else {
        return Err(expired_request());
    };
    if session.is_some() {
        // Already signed in (e.g. in another tab): continue unless a fresh login is required.
        match authorize::decide(&state, &request, &client, session.as_ref(), Some(request_id), authorize::UpstreamAsk::MayStepUp).await {
            Ok(Outcome::Login { .. }) => {}
            Ok(Outcome::StepUp { .. }) => {
                // Signed in, but the app needs more of the ATProto account: the same form,
                // filled in with the account, saying what the PDS will be asked for.
                if let Some(session) = &session {
                    return render_step_up(&state, &req, request_id, &request, session).await;
                }
            }
            other => return outcome_response(other),
        }
    }
    render_login(&state, &req, Some(request_id), None, None).await
}

async fn consent_page(state: web::Data<AppState>, req: HttpRequest, query: web::Query<RequestQuery>) -> Result<HttpResponse, PageError> {
    let request_id = query.request_id.as_deref().ok_or_else(expired_request)?;
    let Some((request, client)) = authorize::load_parked(&state, request_id).await? else {
        return Err(expired_request());
    };
    let Some(session) = session::current_session(&state, &req).await? else {
        return Ok(found(&format!("/login?request_id={request_id}")));
    };
    let user =
        sso::user_profile(&state, &session.did).await?.unwrap_or_else(|| UserProfile { did: session.did.clone(), ..Default::default() });
    let (csrf, cookie) = session::csrf_token(&state, &req);
    let mut context = Context::new();
    context.insert("client_name", &client.name);
    context.insert("client_id", &client.client_id);
    context.insert("user_did", &user.did);
    if let Some(handle) = &user.handle {
        context.insert("user_handle", handle);
    }
    let scopes: Vec<serde_json::Value> =
        request.scopes.iter().map(|s| serde_json::json!({ "name": s, "description": scope_description(s) })).collect();
    context.insert("scopes", &scopes);
    context.insert("claims", &consent_descriptions(&request.scopes, &user));
    context.insert("permissions", &permission_descriptions(&request.upstream_permissions()));
    context.insert("request_id", request_id);
    context.insert("csrf_token", &csrf);
    // Allow/Deny lead back to the app's redirect URI: that origin, no other.
    let policy = PagePolicy::form_target(&request.redirect_uri);
    Ok(super::html::page(
        actix_web::http::StatusCode::OK,
        templates::render("consent.html", &context),
        cookie.into_iter().collect(),
        &policy,
    ))
}

fn scope_description(scope: &str) -> &'static str {
    match scope {
        "openid" => "Sign you in with your ATProto identity",
        "profile" => "See your handle, display name and avatar",
        "email" => "See your email address",
        "offline_access" => "Stay signed in while you are away",
        s if s.starts_with(crate::atproto::permission::TENANT_SCOPE_PREFIX) => "Act in your ATProto account (see above)",
        _ => "Other access",
    }
}

#[derive(Deserialize)]
struct ConsentForm {
    request_id: Option<String>,
    csrf_token: Option<String>,
    decision: Option<String>,
}

async fn consent_submit(state: web::Data<AppState>, req: HttpRequest, form: web::Form<ConsentForm>) -> Result<HttpResponse, PageError> {
    if !session::csrf_valid(&state, &req, form.csrf_token.as_deref()) {
        return Err(PageError::bad_request("Please try again", "The form expired or was not sent from this site."));
    }
    let request_id = form.request_id.as_deref().ok_or_else(expired_request)?;
    let Some((request, client)) = authorize::load_parked(&state, request_id).await? else {
        return Err(expired_request());
    };
    let Some(session) = session::current_session(&state, &req).await? else {
        return Ok(found(&format!("/login?request_id={request_id}")));
    };
    match form.decision.as_deref() {
        Some("allow") => outcome_response(authorize::approve(&state, request_id, request, &client, &session).await),
        Some("deny") => Ok(found(&authorize::deny(&state, request_id, &request, "the user denied the request").await?)),
        _ => Err(PageError::bad_request("Invalid choice", "Choose Allow or Deny.")),
    }
}
