//! The admin REST API under `/api/admin/`: JSON in and out, `Authorization: Bearer <admin token>`
//! only (session cookies are not accepted here, so the API needs no CSRF defence), errors as
//! `{"error": "...", "fields": {...}}`, listings as `{"items": [...], "total": N}` with
//! `?limit=&offset=`. Also RFC 7591 dynamic registration at `/oauth2/register`.
use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    error::JsonPayloadError,
    http::{header, StatusCode},
    middleware::{from_fn, Next},
    web, HttpMessage, HttpRequest, HttpResponse,
};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use super::{audit_addr, bearer_token};
use crate::{
    admin::{
        self,
        auth::{self, TokenError, TokenKind},
        Actor, AdminError, ClientView, Page,
    },
    error::ApiError,
    oidc::clients::{ClientUpdate, FieldErrors, NewClient},
    state::AppState,
    store::admin::AuditFilter,
};

/// Largest JSON body the API reads.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/admin")
            .app_data(web::JsonConfig::default().limit(MAX_JSON_BYTES).error_handler(json_error))
            .app_data(web::QueryConfig::default().error_handler(|err, _| ApiError::bad_request(format!("invalid query: {err}")).into()))
            .wrap(from_fn(require_admin_token))
            .route("/clients", web::get().to(list_clients))
            .route("/clients", web::post().to(create_client))
            .route("/clients/{client_id}", web::get().to(get_client))
            .route("/clients/{client_id}", web::patch().to(update_client))
            .route("/clients/{client_id}", web::delete().to(delete_client))
            .route("/clients/{client_id}/rotate-secret", web::post().to(rotate_secret))
            .route("/clients/{client_id}/disable", web::post().to(disable_client))
            .route("/clients/{client_id}/enable", web::post().to(enable_client))
            .route("/users", web::get().to(list_users))
            .route("/users/{did}", web::get().to(get_user))
            .route("/users/{did}/end-sessions", web::post().to(end_sessions))
            .route("/keys", web::get().to(list_keys))
            .route("/keys/rotate", web::post().to(rotate_keys))
            .route("/audit", web::get().to(list_audit))
            .route("/outbox", web::get().to(outbox_summary))
            .default_service(web::to(|| async { Err::<HttpResponse, _>(ApiError::not_found("no such admin API endpoint")) })),
    );
}

fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is too large (at most {MAX_JSON_BYTES} bytes)"))
        }
        JsonPayloadError::ContentType => {
            ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send a JSON body with Content-Type: application/json")
        }
        JsonPayloadError::Deserialize(e) => ApiError::bad_request(format!("invalid JSON: {e}")),
        other => ApiError::bad_request(format!("the request body could not be read: {other}")),
    };
    api.into()
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        match err {
            TokenError::Missing | TokenError::Invalid => ApiError::new(StatusCode::UNAUTHORIZED, err.to_string()),
            TokenError::WrongKind => ApiError::new(StatusCode::FORBIDDEN, "this token may only register clients, not use the admin API"),
            TokenError::Busy => {
                let mut busy = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string());
                busy.retry_after = Some(1);
                busy
            }
            TokenError::Store(e) => ApiError::internal(&e),
            other => ApiError::internal(&other),
        }
    }
}

/// Authenticates every `/api/admin` request before its body is read; the handler gets an `Actor`.
async fn require_admin_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned().ok_or_else(|| ApiError::internal(&"application state is missing"))?;
    let source = crate::web::client_addr(req.request(), &state.config.trusted_proxies);
    state.limits.admin_auth_by_addr.check(&source).map_err(ApiError::rate_limited)?;
    let presented = bearer_token(req.request()).ok_or_else(|| ApiError::from(TokenError::Missing))?;
    let token = auth::verify_token(&state.store, &state.secrets, &presented, &[TokenKind::Admin]).await.map_err(|err| {
        if matches!(err, TokenError::Invalid) {
            state.limits.admin_auth_by_addr.record_failure(&source);
        }
        ApiError::from(err)
    })?;
    let actor = Actor::new(token.actor_name(), audit_addr(&state, req.request()));
    req.extensions_mut().insert(actor);
    next.call(req).await
}

impl From<AdminError> for ApiError {
    fn from(err: AdminError) -> Self {
        match err {
            AdminError::Invalid(fields) => invalid_fields(fields),
            AdminError::DuplicateName => {
                let mut api = ApiError::new(StatusCode::CONFLICT, "a client with this name already exists");
                api.fields.insert("name".into(), "is already used by another client".into());
                api
            }
            AdminError::NotFound(what) => ApiError::not_found(format!("no such {what}")),
            AdminError::Refused(message) => ApiError::bad_request(message),
            AdminError::Store(e) => ApiError::internal(&e),
            AdminError::Internal(e) => ApiError::internal(&e),
        }
    }
}

fn invalid_fields(fields: FieldErrors) -> ApiError {
    let mut api = ApiError::bad_request("invalid input");
    api.fields = fields.0.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    api
}

fn ok_json(status: StatusCode, body: Value) -> HttpResponse {
    HttpResponse::build(status).insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

fn listing<T: serde::Serialize>(items: &[T], total: u64) -> HttpResponse {
    ok_json(StatusCode::OK, json!({ "items": items, "total": total }))
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
    offset: Option<String>,
    /// users: search by handle or DID
    q: Option<String>,
    /// audit: filters
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
}

impl ListQuery {
    fn page(&self) -> Result<Page, ApiError> {
        Page::parse(self.limit.as_deref(), self.offset.as_deref()).map_err(invalid_fields)
    }
}

async fn list_clients(state: web::Data<AppState>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let page = query.page()?;
    let (clients, total) = admin::list_clients(&state, page).await?;
    let views: Vec<ClientView> = clients.iter().map(ClientView::from).collect();
    Ok(listing(&views, total))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateClientBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    backchannel_logout_uri: Option<String>,
    frontchannel_logout_uri: Option<String>,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    first_party: bool,
    scopes: Option<Vec<String>>,
    /// Exempts a legacy confidential client from PKCE (refused for public clients).
    #[serde(default)]
    allow_no_pkce: bool,
    /// `RS256` or `ES256` for this client's access tokens; absent or `null`: the global setting.
    access_token_alg: Option<String>,
    /// Upstream ATProto permissions it may ask for (`atproto:` prefix optional).
    #[serde(default)]
    atproto_scopes: Vec<String>,
}

fn client_with_secret(view: ClientView, secret: Option<String>) -> Value {
    let mut body = json!(view);
    body["client_secret"] = json!(secret);
    body
}

#[tracing::instrument(name = "admin_create_client", skip_all)]
async fn create_client(
    state: web::Data<AppState>,
    actor: web::ReqData<Actor>,
    body: web::Json<CreateClientBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let new = NewClient {
        name: body.name,
        redirect_uris: body.redirect_uris,
        post_logout_redirect_uris: body.post_logout_redirect_uris,
        backchannel_logout_uri: body.backchannel_logout_uri,
        frontchannel_logout_uri: body.frontchannel_logout_uri,
        public: body.public,
        first_party: body.first_party,
        scopes: body.scopes,
        allow_no_pkce: body.allow_no_pkce,
        access_token_alg: body.access_token_alg,
        atproto_scopes: body.atproto_scopes,
    };
    let (client, secret) = admin::create_client(&state, &actor, new).await?;
    Ok(ok_json(StatusCode::CREATED, client_with_secret(ClientView::from(&client), secret)))
}

async fn get_client(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let client = admin::client(&state, &path).await?;
    Ok(ok_json(StatusCode::OK, json!(ClientView::from(&client))))
}

/// `null` and absent differ for the optional URIs: `null` removes, absent leaves as is.
fn nullable<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateClientBody {
    name: Option<String>,
    redirect_uris: Option<Vec<String>>,
    post_logout_redirect_uris: Option<Vec<String>>,
    #[serde(default, deserialize_with = "nullable")]
    backchannel_logout_uri: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    frontchannel_logout_uri: Option<Option<String>>,
    first_party: Option<bool>,
    scopes: Option<Vec<String>>,
    allow_no_pkce: Option<bool>,
    /// `null` returns the client to the global setting.
    #[serde(default, deserialize_with = "nullable")]
    access_token_alg: Option<Option<String>>,
    /// Replaces the list; `[]` allows none.
    atproto_scopes: Option<Vec<String>>,
}

#[tracing::instrument(name = "admin_update_client", skip_all)]
async fn update_client(
    state: web::Data<AppState>,
    actor: web::ReqData<Actor>,
    path: web::Path<String>,
    body: web::Json<UpdateClientBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let change = ClientUpdate {
        name: body.name,
        redirect_uris: body.redirect_uris,
        post_logout_redirect_uris: body.post_logout_redirect_uris,
        backchannel_logout_uri: body.backchannel_logout_uri,
        frontchannel_logout_uri: body.frontchannel_logout_uri,
        first_party: body.first_party,
        scopes: body.scopes,
        allow_no_pkce: body.allow_no_pkce,
        access_token_alg: body.access_token_alg,
        atproto_scopes: body.atproto_scopes,
    };
    let nothing = change.name.is_none()
        && change.redirect_uris.is_none()
        && change.post_logout_redirect_uris.is_none()
        && change.backchannel_logout_uri.is_none()
        && change.frontchannel_logout_uri.is_none()
        && change.first_party.is_none()
        && change.scopes.is_none()
        && change.allow_no_pkce.is_none()
        && change.access_token_alg.is_none()
        && change.atproto_scopes.is_none();
    if nothing {
        return Err(ApiError::bad_request("nothing to change: send at least one setting"));
    }
    let client = admin::update_client(&state, &actor, &path, change).await?;
    Ok(ok_json(StatusCode::OK, json!(ClientView::from(&client))))
}

async fn delete_client(state: web::Data<AppState>, actor: web::ReqData<Actor>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    admin::delete_client(&state, &actor, &path).await?;
    Ok(HttpResponse::NoContent().insert_header((header::CACHE_CONTROL, "no-store")).finish())
}

async fn rotate_secret(state: web::Data<AppState>, actor: web::ReqData<Actor>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let secret = admin::rotate_client_secret(&state, &actor, &path).await?;
    Ok(ok_json(StatusCode::OK, json!({ "client_id": path.as_str(), "client_secret": secret })))
}

async fn disable_client(state: web::Data<AppState>, actor: web::ReqData<Actor>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    set_enabled(&state, &actor, &path, false).await
}

async fn enable_client(state: web::Data<AppState>, actor: web::ReqData<Actor>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    set_enabled(&state, &actor, &path, true).await
}

async fn set_enabled(state: &AppState, actor: &Actor, client_id: &str, enabled: bool) -> Result<HttpResponse, ApiError> {
    admin::set_client_enabled(state, actor, client_id, enabled).await?;
    let client = admin::client(state, client_id).await?;
    Ok(ok_json(StatusCode::OK, json!(ClientView::from(&client))))
}

async fn list_users(state: web::Data<AppState>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let page = query.page()?;
    let (users, total) = admin::list_users(&state, query.q.as_deref(), page).await?;
    let views: Vec<admin::UserView> = users.into_iter().map(admin::UserView::from).collect();
    Ok(listing(&views, total))
}

async fn get_user(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(ok_json(StatusCode::OK, json!(admin::user_detail(&state, &path).await?)))
}

#[tracing::instrument(name = "admin_end_sessions", skip_all)]
async fn end_sessions(state: web::Data<AppState>, actor: web::ReqData<Actor>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let ended = admin::end_user_sessions(&state, &actor, &path).await?;
    Ok(ok_json(StatusCode::OK, json!({ "did": path.as_str(), "ended_sessions": ended })))
}

async fn outbox_summary(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(ok_json(StatusCode::OK, json!(admin::outbox::queue_summary(&state).await?)))
}

async fn list_keys(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let keys = admin::signing_keys(&state).await?;
    Ok(listing(&keys, keys.len() as u64))
}

async fn rotate_keys(state: web::Data<AppState>, actor: web::ReqData<Actor>) -> Result<HttpResponse, ApiError> {
    let rotation = admin::rotate_signing_key(&state, &actor).await?;
    Ok(ok_json(
        StatusCode::OK,
        json!({ "kid": rotation.rs256_kid, "es256_kid": rotation.es256_kid, "activates_at": rotation.activates_at }),
    ))
}

async fn list_audit(state: web::Data<AppState>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let page = query.page()?;
    let filter = AuditFilter { actor: query.actor.clone(), action: query.action.clone(), target: query.target.clone() };
    let (entries, total) = admin::list_audit(&state, &filter, page).await?;
    let items: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id, "at": e.at, "actor": e.actor, "action": e.action,
                "target": e.target, "remote_addr": e.remote_addr, "details": e.details,
            })
        })
        .collect();
    Ok(listing(&items, total))
}
