//! The admin web UI under `/admin`: plain HTML forms, one small script (copy buttons).
//! Who gets in: an SSO session (atsso's own ATProto login) whose DID is in `ATSSO_ADMIN_DIDS`.
//! Signed out → a page with a "Sign in" link to `/login` (after signing in, people land on `/`
//! and come back to `/admin`); signed in as someone else → 403. Every form carries the CSRF
//! double-submit token; destructive actions (rotate, disable, delete, end sessions, key
//! rotation) go through a confirmation page first.
use actix_web::{
    cookie::{time::OffsetDateTime, Cookie},
    error::UrlencodedError,
    http::{header, Method, StatusCode},
    web, HttpRequest, HttpResponse,
};
use serde::Deserialize;
use serde_json::{json, Value};
use tera::Context;

use super::audit_addr;
use super::session;
use crate::{
    admin::{self, auth::is_admin_did, Actor, AdminError, ClientView, Page},
    error::PageError,
    oidc::{
        claims::SUPPORTED_SCOPES,
        clients::{ClientUpdate, FieldErrors, NewClient},
    },
    sso,
    state::AppState,
    store::{admin::AuditFilter, clients::Client},
    templates,
};

/// Admin forms are small; anything bigger is refused with 413.
const MAX_FORM_BYTES: usize = 32 * 1024;
const PAGE_SIZE: u64 = 50;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/assets/admin.css", web::get().to(|| async { asset("text/css; charset=utf-8", templates::ADMIN_STYLESHEET) }))
        .route("/assets/admin.js", web::get().to(|| async { asset("text/javascript; charset=utf-8", templates::ADMIN_SCRIPT) }));
    cfg.service(
        web::scope("/admin")
            .app_data(web::FormConfig::default().limit(MAX_FORM_BYTES).error_handler(form_error))
            .route("", web::get().to(clients_page))
            .route("/", web::get().to(clients_page))
            .route("/clients", web::get().to(clients_page))
            .route("/clients", web::post().to(create_client))
            .route("/clients/new", web::get().to(new_client_page))
            .route("/clients/{client_id}", web::get().to(client_page))
            .route("/clients/{client_id}", web::post().to(update_client))
            .route("/clients/{client_id}/{action}", web::get().to(confirm_client_action))
            .route("/clients/{client_id}/{action}", web::post().to(client_action))
            .route("/users", web::get().to(users_page))
            .route("/users/{did}", web::get().to(user_page))
            .route("/users/{did}/end-sessions", web::get().to(confirm_end_sessions))
            .route("/users/{did}/end-sessions", web::post().to(end_sessions))
            .route("/keys", web::get().to(keys_page))
            .route("/keys/rotate", web::get().to(confirm_rotate_keys))
            .route("/keys/rotate", web::post().to(rotate_keys))
            .route("/audit", web::get().to(audit_page)),
    );
}

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok().content_type(content_type).insert_header((header::CACHE_CONTROL, "public, max-age=3600")).body(body)
}

fn form_error(err: UrlencodedError, _req: &HttpRequest) -> actix_web::Error {
    match err {
        UrlencodedError::Overflow { .. } => PageError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Too much data",
            format!("The form is larger than {} KiB. Please shorten it.", MAX_FORM_BYTES / 1024),
        )
        .into(),
        other => PageError::bad_request("Invalid form", format!("The form could not be read: {other}")).into(),
    }
}

fn html(status: StatusCode, body: String, cookie: Option<Cookie<'static>>) -> HttpResponse {
    super::html::page(status, body, cookie.into_iter().collect(), &Default::default())
}

fn redirect(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).insert_header((header::CACHE_CONTROL, "no-store")).finish()
}

/// The signed-in administrator.
struct AdminUser {
    actor: Actor,
    did: String,
    handle: Option<String>,
}

enum Gate {
    Admin(AdminUser),
    /// Not signed in: show this instead.
    SignIn(HttpResponse),
}

async fn gate(state: &AppState, req: &HttpRequest) -> Result<Gate, PageError> {
    let Some(session) = session::current_session(state, req).await? else {
        if req.method() != Method::GET {
            return Err(PageError::new(StatusCode::UNAUTHORIZED, "Please sign in", "Sign in as an administrator, then try again."));
        }
        let (csrf, cookie) = session::csrf_token(state, req);
        let mut context = Context::new();
        context.insert("csrf_token", &csrf);
        return Ok(Gate::SignIn(html(StatusCode::OK, templates::render("admin/signin.html", &context), cookie)));
    };
    let handle = sso::user_profile(state, &session.did).await?.and_then(|u| u.handle);
    if !is_admin_did(&state.config, &session.did) {
        let who = handle.as_ref().map(|h| format!("@{h} ({})", session.did)).unwrap_or_else(|| session.did.clone());
        return Err(PageError::new(
            StatusCode::FORBIDDEN,
            "Not an administrator",
            format!("You are signed in as {who}, which is not listed in ATSSO_ADMIN_DIDS."),
        ));
    }
    Ok(Gate::Admin(AdminUser { actor: Actor::new(session.did.clone(), audit_addr(state, req)), did: session.did, handle }))
}

/// `let admin = admin!(state, req);` — the administrator, or the sign-in page returned early.
macro_rules! admin {
    ($state:expr, $req:expr) => {
        match gate(&$state, &$req).await? {
            Gate::Admin(admin) => admin,
            Gate::SignIn(response) => return Ok(response),
        }
    };
}

/// Refuses a form without the CSRF token of this browser.
fn require_csrf(state: &AppState, req: &HttpRequest, form: &FormData) -> Result<(), PageError> {
    if session::csrf_valid(state, req, form.get("csrf_token")) {
        Ok(())
    } else {
        Err(PageError::bad_request(
            "Please try again",
            "The form expired or was not sent from this site (missing or wrong CSRF token). Nothing was changed.",
        ))
    }
}

fn render(
    state: &AppState,
    req: &HttpRequest,
    admin: &AdminUser,
    status: StatusCode,
    name: &str,
    nav: &str,
    mut context: Context,
) -> HttpResponse {
    let (csrf, cookie) = session::csrf_token(state, req);
    context.insert("csrf_token", &csrf);
    context.insert("admin_did", &admin.did);
    if let Some(handle) = &admin.handle {
        context.insert("admin_handle", handle);
    }
    context.insert("nav", nav);
    html(status, templates::render(name, &context), cookie)
}

fn page_error(err: AdminError) -> PageError {
    match err {
        AdminError::NotFound(what) => PageError::new(StatusCode::NOT_FOUND, "Not found", format!("There is no such {what}.")),
        AdminError::Refused(message) => PageError::bad_request("Not possible", message),
        AdminError::Invalid(fields) => PageError::bad_request("Invalid input", fields.to_string()),
        AdminError::DuplicateName => PageError::new(StatusCode::CONFLICT, "Name taken", "A client with this name already exists."),
        AdminError::Store(e) => PageError::internal(&e),
        AdminError::Internal(e) => PageError::internal(&e),
    }
}

/// "2026-11-26 14:05 UTC"
fn when(ts: i64) -> String {
    OffsetDateTime::from_unix_timestamp(ts)
        .map(|t| format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute()))
        .unwrap_or_default()
}

fn notice_text(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "saved" => "Changes saved.",
        "enabled" => "The client is enabled.",
        "disabled" => "The client is disabled: its tokens are revoked and its sign-in and token requests are refused.",
        "deleted" => "The client was deleted.",
        "sessions_ended" => "Every session of this user has ended.",
        "key_rotated" => "New signing keys are published; they start signing after the activation delay.",
        _ => return None,
    })
}

/// Pager links for a listing at `base` (a path with optional query).
fn pager(context: &mut Context, base: &str, extra: &[(&str, &str)], page: Page, shown: usize, total: u64) {
    let link = |offset: u64| {
        let mut pairs: Vec<(&str, String)> = extra.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (*k, v.to_string())).collect();
        if offset > 0 {
            pairs.push(("offset", offset.to_string()));
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        if query.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{query}")
        }
    };
    if page.offset > 0 {
        context.insert("prev_url", &link(page.offset.saturating_sub(page.limit)));
    }
    if page.offset + (shown as u64) < total {
        context.insert("next_url", &link(page.offset + page.limit));
    }
    if shown > 0 {
        context.insert("range_text", &format!("{}–{} of {}", page.offset + 1, page.offset + shown as u64, total));
    }
}

#[derive(Deserialize)]
struct ListQuery {
    offset: Option<String>,
    q: Option<String>,
    notice: Option<String>,
}

impl ListQuery {
    fn page(&self) -> Page {
        Page::parse(None, self.offset.as_deref()).unwrap_or(Page { limit: PAGE_SIZE, offset: 0 })
    }
}

/// A submitted form: every pair, so repeated names (checkboxes) are kept.
struct FormData(Vec<(String, String)>);

impl FormData {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }
    fn flag(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
    fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or("").trim().to_owned()
    }
    fn lines(&self, name: &str) -> Vec<String> {
        self.get(name).unwrap_or("").lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
    }
    fn optional(&self, name: &str) -> Option<String> {
        Some(self.text(name)).filter(|t| !t.is_empty())
    }
}

// ---- clients ----

async fn clients_page(state: web::Data<AppState>, req: HttpRequest, query: web::Query<ListQuery>) -> Result<HttpResponse, PageError> {
    let admin = admin!(state, req);
    let page = query.page();
    let page = Page { limit: PAGE_SIZE, ..page };
    let (clients, total) = admin::list_clients(&state, page).await?;
    let rows: Vec<Value> = clients
        .iter()
        .map(|c| {
            let mut row = json!(ClientView::from(c));
            row["created"] = json!(when(c.created_at));
            row
        })
        .collect();
    let mut context = Context::new();
    context.insert("clients", &rows);
    context.insert("total", &total);
    pager(&mut context, "/admin", &[], page, rows.len(), total);
    if let Some(notice) = notice_text(query.notice.as_deref()) {
        context.insert("notice", notice);
    }
    Ok(render(&state, &req, &admin, StatusCode::OK, "admin/clients.html", "clients", context))
}

/// The form values and scope checkboxes of the client form.
fn client_form_context(context: &mut Context, state: &AppState, form: Value, scopes: &[String], errors: &FieldErrors) {
    context.insert("form", &form);
    // What "the global setting" means for the access-token algorithm choice.
    context.insert("global_access_token_alg", state.config.access_token_alg.as_str());
    let options: Vec<Value> = SUPPORTED_SCOPES.iter().map(|s| json!({ "name": s, "checked": scopes.iter().any(|c| c == s) })).collect();
    context.insert("scope_options", &options);
    let errors: serde_json::Map<String, Value> = errors.0.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    if !errors.is_empty() {
        context.insert("errors", &errors);
    }
}

fn form_values(form: &FormData) -> Value {
    json!({
        "name": form.text("name"),
        "redirect_uris": form.get("redirect_uris").unwrap_or(""),
        "post_logout_redirect_uris": form.get("post_logout_redirect_uris").unwrap_or(""),
        "backchannel_logout_uri": form.text("backchannel_logout_uri"),
        "frontchannel_logout_uri": form.text("frontchannel_logout_uri"),
        "first_party": form.flag("first_party"),
        "public": form.flag("public"),
        "allow_no_pkce": form.flag("allow_no_pkce"),
        "access_token_alg": form.text("access_token_alg"),
        "atproto_scopes": form.get("atproto_scopes").unwrap_or(""),
    })
}

fn client_values(client: &Client) -> Value {
    json!({
        "name": client.name,
        "redirect_uris": client.redirect_uris.join("\n"),
        "post_logout_redirect_uris": client.post_logout_redirect_uris.join("\n"),
        "backchannel_logout_uri": client.backchannel_logout_uri.clone().unwrap_or_default(),
        "frontchannel_logout_uri": client.frontchannel_logout_uri.clone().unwrap_or_default(),
        "first_party": client.first_party,
        "public": client.is_public(),
        "allow_no_pkce": client.allow_no_pkce,
        "access_token_alg": client.access_token_alg.map(|alg| alg.as_str()).unwrap_or_default(),
        "atproto_scopes": client.atproto_scopes.join("\n"),
    })
}

async fn new_client_page(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    let admin = admin!(state, req);
    let mut context = Context::new();
    let defaults: Vec<String> = ["openid", "profile"].iter().map(|s| s.to_string()).collect();
    client_form_context(
        &mut context,
        &state,
        json!({ "name": "", "redirect_uris": "", "post_logout_redirect_uris": "", "backchannel_logout_uri": "", "frontchannel_logout_uri": "", "first_party": false, "public": false, "allow_no_pkce": false, "access_token_alg": "", "atproto_scopes": "" }),
        &defaults,
        &FieldErrors::default(),
    );
    Ok(render(&state, &req, &admin, StatusCode::OK, "admin/client_new.html", "clients", context))
}

/// Field errors go back into the form; a duplicate name is reported on the name field.
fn form_failure(err: AdminError) -> Result<(StatusCode, FieldErrors), PageError> {
    match err {
        AdminError::Invalid(fields) => Ok((StatusCode::BAD_REQUEST, fields)),
        AdminError::DuplicateName => {
            let mut fields = FieldErrors::default();
            fields.0.insert("name", "is already used by another client".into());
            Ok((StatusCode::CONFLICT, fields))
        }
        other => Err(page_error(other)),
    }
}

#[tracing::instrument(name = "admin_ui_create_client", skip_all)]
async fn create_client(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, PageError> {
    let admin = admin!(state, req);
    let form = FormData(form.into_inner());
    require_csrf(&state, &req, &form)?;
    let scopes = form.all("scope");
    let new = NewClient {
        name: form.text("name"),
        redirect_uris: form.lines("redirect_uris"),
        post_logout_redirect_uris: form.lines("post_logout_redirect_uris"),
        backchannel_logout_uri: form.optional("backchannel_logout_uri"),
        frontchannel_logout_uri: form.optional("frontchannel_logout_uri"),
        public: form.flag("public"),
        first_party: form.flag("first_party"),
        scopes: Some(scopes.clone()),
        allow_no_pkce: form.flag("allow_no_pkce"),
        access_token_alg: form.optional("access_token_alg"),
        atproto_scopes: form.lines("atproto_scopes"),
    };
    match admin::create_client(&state, &admin.actor, new).await {
        Ok((client, secret)) => Ok(secret_page(&state, &req, &admin, &client, secret.as_deref(), "Client created")),
        Err(err) => {
            let (status, errors) = form_failure(err)?;
            let mut context = Context::new();
            client_form_context(&mut context, &state, form_values(&form), &scopes, &errors);
            Ok(render(&state, &req, &admin, status, "admin/client_new.html", "clients", context))
        }
    }
}

fn secret_page(
    state: &AppState,
    req: &HttpRequest,
    admin: &AdminUser,
    client: &Client,
    secret: Option<&str>,
    heading: &str,
) -> HttpResponse {
    let mut context = Context::new();
    context.insert("client", &ClientView::from(client));
    context.insert("heading", heading);
    if let Some(secret) = secret {
        context.insert("client_secret", secret);
    }
    render(state, req, admin, StatusCode::OK, "admin/secret.html", "clients", context)
}

async fn client_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    let admin = admin!(state, req);
    let client = admin::client(&state, &path).await.map_err(page_error)?;
    let mut context = Context::new();
    client_form_context(&mut context, &state, client_values(&client), &client.allowed_scopes, &FieldErrors::default());
    if let Some(notice) = notice_text(query.notice.as_deref()) {
        context.insert("notice", notice);
    }
    Ok(client_detail(&state, &req, &admin, &client, StatusCode::OK, context))
}

fn client_detail(
    state: &AppState,
    req: &HttpRequest,
    admin: &AdminUser,
    client: &Client,
    status: StatusCode,
    mut context: Context,
) -> HttpResponse {
    context.insert("client", &ClientView::from(client));
    context.insert("created", &when(client.created_at));
    render(state, req, admin, status, "admin/client.html", "clients", context)
}

#[tracing::instrument(name = "admin_ui_update_client", skip_all)]
async fn update_client(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, PageError> {
    let admin = admin!(state, req);
    let form = FormData(form.into_inner());
    require_csrf(&state, &req, &form)?;
    let client = admin::client(&state, &path).await.map_err(page_error)?;
    let scopes = form.all("scope");
    let change = ClientUpdate {
        name: Some(form.text("name")),
        redirect_uris: Some(form.lines("redirect_uris")),
        post_logout_redirect_uris: Some(form.lines("post_logout_redirect_uris")),
        backchannel_logout_uri: Some(form.optional("backchannel_logout_uri")),
        frontchannel_logout_uri: Some(form.optional("frontchannel_logout_uri")),
        first_party: Some(form.flag("first_party")),
        scopes: Some(scopes.clone()),
        // Public clients are not offered the box; for them it stays off.
        allow_no_pkce: Some(form.flag("allow_no_pkce")),
        // The empty choice returns the client to the global setting.
        access_token_alg: Some(form.optional("access_token_alg")),
        // An empty field allows none.
        atproto_scopes: Some(form.lines("atproto_scopes")),
    };
    match admin::update_client(&state, &admin.actor, &client.client_id, change).await {
        Ok(client) => Ok(redirect(&format!("/admin/clients/{}?notice=saved", client.client_id))),
        Err(err) => {
            let (status, errors) = form_failure(err)?;
            let mut context = Context::new();
            client_form_context(&mut context, &state, form_values(&form), &scopes, &errors);
            Ok(client_detail(&state, &req, &admin, &client, status, context))
        }
    }
}

/// What a confirmation page asks.
struct Confirm<'a> {
    nav: &'a str,
    heading: &'a str,
    message: &'a str,
    /// Where the form posts.
    action: &'a str,
    button: &'a str,
    danger: bool,
    cancel_url: &'a str,
}

fn confirm_page(state: &AppState, req: &HttpRequest, admin: &AdminUser, confirm: Confirm<'_>) -> HttpResponse {
    let mut context = Context::new();
    context.insert("heading", confirm.heading);
    context.insert("message", confirm.message);
    context.insert("action", confirm.action);
    context.insert("button", confirm.button);
    context.insert("danger", &confirm.danger);
    context.insert("cancel_url", confirm.cancel_url);
    render(state, req, admin, StatusCode::OK, "admin/confirm.html", confirm.nav, context)
}

async fn confirm_client_action(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let admin = admin!(state, req);
    let (client_id, action) = path.into_inner();
    let client = admin::client(&state, &client_id).await.map_err(page_error)?;
    let name = &client.name;
    let (heading, message, button, danger) = match action.as_str() {
        "rotate-secret" => (
            format!("Rotate the secret of {name}?"),
            format!("A new secret is shown once. The current secret stops working at once: {name} cannot sign anyone in until it is configured with the new one."),
            "Rotate secret",
            true,
        ),
        "disable" => (
            format!("Disable {name}?"),
            format!("{name} can no longer sign people in, and every token it holds is revoked at once. You can enable it again later; its old tokens stay revoked."),
            "Disable client",
            true,
        ),
        "delete" => (
            format!("Delete {name}?"),
            format!("{name} is removed, its refresh and access tokens are revoked and its consents are forgotten. This cannot be undone."),
            "Delete client",
            true,
        ),
        _ => return Err(page_error(AdminError::NotFound("page"))),
    };
    let form_action = format!("/admin/clients/{client_id}/{action}");
    let cancel = format!("/admin/clients/{client_id}");
    Ok(confirm_page(
        &state,
        &req,
        &admin,
        Confirm { nav: "clients", heading: &heading, message: &message, action: &form_action, button, danger, cancel_url: &cancel },
    ))
}

#[tracing::instrument(name = "admin_ui_client_action", skip_all)]
async fn client_action(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, PageError> {
    let admin = admin!(state, req);
    let form = FormData(form.into_inner());
    require_csrf(&state, &req, &form)?;
    let (client_id, action) = path.into_inner();
    match action.as_str() {
        "rotate-secret" => {
            let secret = admin::rotate_client_secret(&state, &admin.actor, &client_id).await.map_err(page_error)?;
            let client = admin::client(&state, &client_id).await.map_err(page_error)?;
            Ok(secret_page(&state, &req, &admin, &client, Some(&secret), &format!("New secret for {}", client.name)))
        }
        "disable" | "enable" => {
            let enabled = action == "enable";
            admin::set_client_enabled(&state, &admin.actor, &client_id, enabled).await.map_err(page_error)?;
            Ok(redirect(&format!("/admin/clients/{client_id}?notice={action}d")))
        }
        "delete" => {
            admin::delete_client(&state, &admin.actor, &client_id).await.map_err(page_error)?;
            Ok(redirect("/admin?notice=deleted"))
        }
        _ => Err(page_error(AdminError::NotFound("page"))),
    }
}

// ---- users ----

async fn users_page(state: web::Data<AppState>, req: HttpRequest, query: web::Query<ListQuery>) -> Result<HttpResponse, PageError> {
    let admin = admin!(state, req);
    let page = query.page();
    let q = query.q.clone().unwrap_or_default();
    let (users, total) = admin::list_users(&state, Some(&q), page).await?;
    let queue = admin::outbox::queue_summary(&state).await.map_err(page_error)?;
    let rows: Vec<Value> =
        users.into_iter().map(|u| json!({ "did": u.did, "handle": u.handle, "last_seen_text": when(u.updated_at) })).collect();
    let mut context = Context::new();
    context.insert("users", &rows);
    context.insert("total", &total);
    context.insert("q", &q);
    context.insert("queue", &queue);
    pager(&mut context, "/admin/users", &[("q", q.as_str())], page, rows.len(), total);
    Ok(render(&state, &req, &admin, StatusCode::OK, "admin/users.html", "users", context))
}

async fn user_page(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, PageError> {
    let admin = admin!(state, req);
    let detail = admin::user_detail(&state, &path).await.map_err(page_error)?;
    let mut context = Context::new();
    context.insert("first_seen", &when(detail.user.first_seen));
    context.insert("last_seen", &when(detail.user.last_seen));
    context.insert("user", &detail.user);
    let sessions: Vec<Value> = detail
        .sessions
        .iter()
        .map(|s| json!({ "sid": s.sid, "auth_time_text": when(s.auth_time), "expires_text": when(s.expires_at) }))
        .collect();
    context.insert("sessions", &sessions);
    let deliveries: Vec<Value> = detail
        .sessions
        .iter()
        .map(|s| (&s.sid, &s.deliveries))
        .chain(detail.ended_sessions.iter().map(|s| (&s.sid, &s.deliveries)))
        .flat_map(|(sid, deliveries)| deliveries_rows(sid, deliveries))
        .collect();
    context.insert("deliveries", &deliveries);
    let consents: Vec<Value> = detail
        .consents
        .iter()
        .map(|c| json!({ "client_id": c.client_id, "client_name": c.client_name, "scopes": c.scopes, "granted_text": when(c.granted_at) }))
        .collect();
    context.insert("consents", &consents);
    if let Some(notice) = notice_text(query.notice.as_deref()) {
        context.insert("notice", notice);
    }
    Ok(render(&state, &req, &admin, StatusCode::OK, "admin/user.html", "users", context))
}

/// A session's deliveries as the user page lists them.
fn deliveries_rows(sid: &str, deliveries: &[admin::DeliveryView]) -> Vec<Value> {
    deliveries
        .iter()
        .map(|d| {
            json!({
                "sid": sid, "kind": if d.kind == "upstream_revoke" { "Upstream revocation" } else { "Back-channel logout" },
                "client_id": d.client_id, "client_name": d.client_name, "target": d.target, "status": d.status,
                "attempts": d.attempts, "last_error": d.last_error,
                "next_text": d.next_attempt_at.map(when).unwrap_or_default(),
            })
        })
        .collect()
}

async fn confirm_end_sessions(state: web::Data<AppState>, req: HttpRequest, path: web::Path<String>) -> Result<HttpResponse, PageError> {
    let admin = admin!(state, req);
    let detail = admin::user_detail(&state, &path).await.map_err(page_error)?;
    let who = detail.user.handle.as_ref().map(|h| format!("@{h}")).unwrap_or_else(|| detail.user.did.clone());
    let message = format!(
        "{who} is signed out of atsso and of every app ({} active session(s)): tokens are revoked and apps are told through back-channel logout.",
        detail.sessions.len()
    );
    let action = format!("/admin/users/{}/end-sessions", detail.user.did);
    let cancel = format!("/admin/users/{}", detail.user.did);
    let heading = format!("End every session of {who}?");
    Ok(confirm_page(
        &state,
        &req,
        &admin,
        Confirm {
            nav: "users",
            heading: &heading,
            message: &message,
            action: &action,
            button: "End all sessions",
            danger: true,
            cancel_url: &cancel,
        },
    ))
}

#[tracing::instrument(name = "admin_ui_end_sessions", skip_all)]
async fn end_sessions(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, PageError> {
    let admin = admin!(state, req);
    let form = FormData(form.into_inner());
    require_csrf(&state, &req, &form)?;
    admin::end_user_sessions(&state, &admin.actor, &path).await.map_err(page_error)?;
    Ok(redirect(&format!("/admin/users/{}?notice=sessions_ended", path.as_str())))
}

// ---- keys ----

async fn keys_page(state: web::Data<AppState>, req: HttpRequest, query: web::Query<ListQuery>) -> Result<HttpResponse, PageError> {
    let admin = admin!(state, req);
    let keys: Vec<Value> = admin::signing_keys(&state)
        .await
        .map_err(page_error)?
        .into_iter()
        .map(|k| {
            json!({
                "kid": k.kid, "alg": k.alg, "state": k.state, "published": k.published,
                "created_text": when(k.created_at), "activates_text": when(k.activates_at),
                "retired_text": k.retired_at.map(when).unwrap_or_default(),
            })
        })
        .collect();
    let mut context = Context::new();
    context.insert("keys", &keys);
    if let Some(notice) = notice_text(query.notice.as_deref()) {
        context.insert("notice", notice);
    }
    Ok(render(&state, &req, &admin, StatusCode::OK, "admin/keys.html", "keys", context))
}

async fn confirm_rotate_keys(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    let admin = admin!(state, req);
    Ok(confirm_page(
        &state,
        &req,
        &admin,
        Confirm {
            nav: "keys",
            heading: "Rotate the signing key?",
            message: "New keys are published in the JWKS at once and sign new ID and access tokens after the activation delay, when every node and relying party has them. The current keys sign until then and stay in the JWKS until the tokens they signed have expired, so nobody is signed out.",
            action: "/admin/keys/rotate",
            button: "Rotate key",
            danger: false,
            cancel_url: "/admin/keys",
        },
    ))
}

#[tracing::instrument(name = "admin_ui_rotate_keys", skip_all)]
async fn rotate_keys(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, PageError> {
    let admin = admin!(state, req);
    let form = FormData(form.into_inner());
    require_csrf(&state, &req, &form)?;
    admin::rotate_signing_key(&state, &admin.actor).await.map_err(page_error)?;
    Ok(redirect("/admin/keys?notice=key_rotated"))
}

// ---- audit ----

async fn audit_page(state: web::Data<AppState>, req: HttpRequest, query: web::Query<ListQuery>) -> Result<HttpResponse, PageError> {
    let admin = admin!(state, req);
    let page = query.page();
    let (entries, total) = admin::list_audit(&state, &AuditFilter::default(), page).await?;
    let rows: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            json!({
                "at_text": when(e.at), "actor": e.actor, "action": e.action,
                "target": e.target, "remote_addr": e.remote_addr, "details": e.details,
            })
        })
        .collect();
    let mut context = Context::new();
    context.insert("entries", &rows);
    context.insert("total", &total);
    pager(&mut context, "/admin/audit", &[], page, rows.len(), total);
    Ok(render(&state, &req, &admin, StatusCode::OK, "admin/audit.html", "audit", context))
}
