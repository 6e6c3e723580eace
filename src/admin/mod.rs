//! Administration of tenant clients, users and signing keys, shared by the CLI, the REST API
//! (`web/admin_api.rs`, admin API tokens only) and the web UI (`web/admin_ui.rs`, SSO session of
//! an admin DID + CSRF). Every change goes through a function here, which records it in the audit log.
pub mod auth;
pub mod outbox;
pub mod registration;

use serde::Serialize;

use crate::{
    audit,
    clock::now,
    keys,
    oidc::clients::{self, ClientUpdate, FieldErrors, NewClient, RegistrationError},
    sso::logout::end_all_sessions,
    state::AppState,
    store::{
        admin::{AuditEntry, AuditFilter, ConsentRow, UserRow},
        clients::Client,
        sessions::SsoSession,
        StoreError,
    },
};

pub use crate::audit::Actor;
pub use outbox::{DeliveryView, EndedSessionView, QueueSummary};

/// Listings return at most this many items per page.
pub const MAX_PAGE_SIZE: u64 = 200;
pub const DEFAULT_PAGE_SIZE: u64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("invalid settings: {0}")]
    Invalid(FieldErrors),
    #[error("a client with this name already exists")]
    DuplicateName,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RegistrationError> for AdminError {
    fn from(err: RegistrationError) -> Self {
        match err {
            RegistrationError::Invalid(fields) => Self::Invalid(fields),
            RegistrationError::DuplicateName => Self::DuplicateName,
            RegistrationError::UnknownClient => Self::NotFound("client"),
            RegistrationError::Store(e) => Self::Store(e),
            RegistrationError::Hash => Self::Internal("hashing a secret failed".into()),
        }
    }
}

/// `limit`/`offset` of a listing, already checked.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: u64,
    pub offset: u64,
}

impl Page {
    /// Parses `?limit=&offset=`: limit 1..; values above [`MAX_PAGE_SIZE`] are capped.
    pub fn parse(limit: Option<&str>, offset: Option<&str>) -> Result<Self, FieldErrors> {
        let mut errors = std::collections::BTreeMap::new();
        let limit = match limit.filter(|s| !s.is_empty()) {
            None => DEFAULT_PAGE_SIZE,
            Some(text) => match text.parse::<u64>() {
                Ok(0) | Err(_) => {
                    errors.insert("limit", "must be a whole number from 1 to 200".to_string());
                    DEFAULT_PAGE_SIZE
                }
                Ok(n) => n.min(MAX_PAGE_SIZE),
            },
        };
        let offset = match offset.filter(|s| !s.is_empty()) {
            None => 0,
            Some(text) => text.parse::<u64>().unwrap_or_else(|_| {
                errors.insert("offset", "must be a whole number, 0 or more".to_string());
                0
            }),
        };
        if errors.is_empty() {
            Ok(Self { limit, offset })
        } else {
            Err(FieldErrors(errors))
        }
    }
}

/// A client as the API and the pages show it (never its secret hash).
#[derive(Debug, Clone, Serialize)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    pub public: bool,
    pub first_party: bool,
    pub enabled: bool,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    pub frontchannel_logout_uri: Option<String>,
    pub scopes: Vec<String>,
    pub created_at: i64,
    /// A legacy confidential client exempted from PKCE.
    pub allow_no_pkce: bool,
    /// `RS256` or `ES256` for its access tokens; `null` follows `ATSSO_ACCESS_TOKEN_ALG`.
    pub access_token_alg: Option<&'static str>,
    /// The upstream ATProto permissions it may ask for (canonical, without `atproto:`).
    pub atproto_scopes: Vec<String>,
}

impl From<&Client> for ClientView {
    fn from(c: &Client) -> Self {
        Self {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            public: c.is_public(),
            first_party: c.first_party,
            enabled: c.enabled,
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            backchannel_logout_uri: c.backchannel_logout_uri.clone(),
            frontchannel_logout_uri: c.frontchannel_logout_uri.clone(),
            scopes: c.allowed_scopes.clone(),
            created_at: c.created_at,
            allow_no_pkce: c.allow_no_pkce,
            access_token_alg: c.access_token_alg.map(|alg| alg.as_str()),
            atproto_scopes: c.atproto_scopes.clone(),
        }
    }
}

pub async fn create_client(state: &AppState, actor: &Actor, new: NewClient) -> Result<(Client, Option<String>), AdminError> {
    let (client, secret) = clients::register(&state.store, new).await?;
    audit::record(&state.store, actor, "client.create", Some(&client.client_id), Some(format!("name={}", client.name))).await;
    Ok((client, secret))
}

pub async fn update_client(state: &AppState, actor: &Actor, client_id: &str, change: ClientUpdate) -> Result<Client, AdminError> {
    let before = client(state, client_id).await?;
    let after = clients::update(&state.store, client_id, change).await?;
    let mut changed = Vec::new();
    for (field, differs) in [
        ("name", before.name != after.name),
        ("redirect_uris", before.redirect_uris != after.redirect_uris),
        ("post_logout_redirect_uris", before.post_logout_redirect_uris != after.post_logout_redirect_uris),
        ("backchannel_logout_uri", before.backchannel_logout_uri != after.backchannel_logout_uri),
        ("frontchannel_logout_uri", before.frontchannel_logout_uri != after.frontchannel_logout_uri),
        ("first_party", before.first_party != after.first_party),
        ("scopes", before.allowed_scopes != after.allowed_scopes),
        ("allow_no_pkce", before.allow_no_pkce != after.allow_no_pkce),
        ("access_token_alg", before.access_token_alg != after.access_token_alg),
        ("atproto_scopes", before.atproto_scopes != after.atproto_scopes),
    ] {
        if differs {
            changed.push(field);
        }
    }
    let details = if changed.is_empty() { "no changes".to_string() } else { format!("fields={}", changed.join(",")) };
    audit::record(&state.store, actor, "client.update", Some(client_id), Some(details)).await;
    Ok(after)
}

pub async fn rotate_client_secret(state: &AppState, actor: &Actor, client_id: &str) -> Result<String, AdminError> {
    let secret = clients::rotate_secret(&state.store, Some(&state.secrets), client_id).await.map_err(|e| match e {
        RegistrationError::Invalid(_) => AdminError::Refused("public clients have no secret".into()),
        other => other.into(),
    })?;
    audit::record(&state.store, actor, "client.rotate_secret", Some(client_id), None).await;
    Ok(secret)
}

pub async fn set_client_enabled(state: &AppState, actor: &Actor, client_id: &str, enabled: bool) -> Result<(), AdminError> {
    clients::set_enabled(&state.store, Some(&state.secrets), client_id, enabled).await?;
    let action = if enabled { "client.enable" } else { "client.disable" };
    audit::record(&state.store, actor, action, Some(client_id), None).await;
    Ok(())
}

pub async fn delete_client(state: &AppState, actor: &Actor, client_id: &str) -> Result<(), AdminError> {
    clients::delete(&state.store, Some(&state.secrets), client_id).await?;
    audit::record(&state.store, actor, "client.delete", Some(client_id), None).await;
    Ok(())
}

pub async fn client(state: &AppState, client_id: &str) -> Result<Client, AdminError> {
    state.store.client(client_id).await?.ok_or(AdminError::NotFound("client"))
}

/// A user with what the admin pages show about them.
#[derive(Debug, Clone, Serialize)]
pub struct UserDetail {
    pub user: UserView,
    pub sessions: Vec<SessionView>,
    /// Sessions that ended and what their logout still does or did (newest first).
    pub ended_sessions: Vec<EndedSessionView>,
    pub consents: Vec<ConsentView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub did: String,
    pub handle: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub first_seen: i64,
    pub last_seen: i64,
}

impl From<UserRow> for UserView {
    fn from(u: UserRow) -> Self {
        Self {
            did: u.did,
            handle: u.handle,
            display_name: u.display_name,
            email: u.email,
            first_seen: u.created_at,
            last_seen: u.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionView {
    /// The session id as it appears in ID tokens (`sid`); the cookie secret is never shown.
    pub sid: String,
    pub auth_time: i64,
    pub created_at: i64,
    pub expires_at: i64,
    /// What this session has queued (a replaced upstream grant's revocation).
    pub deliveries: Vec<DeliveryView>,
}

impl From<SsoSession> for SessionView {
    fn from(s: SsoSession) -> Self {
        Self { sid: s.sid, auth_time: s.auth_time, created_at: s.created_at, expires_at: s.expires_at, deliveries: Vec::new() }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsentView {
    pub client_id: String,
    pub client_name: Option<String>,
    pub scopes: Vec<String>,
    pub granted_at: i64,
}

pub async fn user_detail(state: &AppState, did: &str) -> Result<UserDetail, AdminError> {
    let user = state.store.user_row(did).await?.ok_or(AdminError::NotFound("user"))?;
    let mut sessions: Vec<SessionView> = state.store.live_sessions_for_did(did, now()).await?.into_iter().map(SessionView::from).collect();
    let ended_sessions = outbox::sessions_deliveries(state, did, &mut sessions).await?;
    let mut consents = Vec::new();
    for ConsentRow { client_id, scopes, created_at, .. } in state.store.consents_for_did(did).await? {
        let client_name = state.store.client(&client_id).await?.map(|c| c.name);
        consents.push(ConsentView {
            client_id,
            client_name,
            scopes: scopes.split(' ').filter(|s| !s.is_empty()).map(String::from).collect(),
            granted_at: created_at,
        });
    }
    Ok(UserDetail { user: user.into(), sessions, ended_sessions, consents })
}

/// Ends every live session of a user everywhere (single logout); returns how many ended.
pub async fn end_user_sessions(state: &AppState, actor: &Actor, did: &str) -> Result<usize, AdminError> {
    if state.store.user_row(did).await?.is_none() {
        return Err(AdminError::NotFound("user"));
    }
    let ended = end_all_sessions(state, did).await?;
    audit::record(&state.store, actor, "user.end_sessions", Some(did), Some(format!("sessions={ended}"))).await;
    Ok(ended)
}

pub use crate::keys::{KeyView, Rotation};

pub async fn signing_keys(state: &AppState) -> Result<Vec<KeyView>, AdminError> {
    Ok(keys::list(&state.store, &state.config).await?)
}

/// Makes new signing keys, published at once (this node reloads now, the others within the
/// reload interval) and signing after the activation delay.
pub async fn rotate_signing_key(state: &AppState, actor: &Actor) -> Result<Rotation, AdminError> {
    let rotation = keys::rotate(&state.store, &state.sealer, state.config.key_activation_delay_secs)
        .await
        .map_err(|e| AdminError::Internal(e.to_string()))?;
    state.keys.reload(&state.store, &state.sealer, &state.config).await.map_err(|e| AdminError::Internal(e.to_string()))?;
    let details = format!("es256_kid={} activates_at={}", rotation.es256_kid, rotation.activates_at);
    audit::record(&state.store, actor, "keys.rotate", Some(&rotation.rs256_kid), Some(details)).await;
    Ok(rotation)
}

/// One page of the registered clients, and how many there are.
pub async fn list_clients(state: &AppState, page: Page) -> Result<(Vec<Client>, u64), StoreError> {
    state.store.list_clients_page(page.limit, page.offset).await
}

/// One page of the users whose handle or DID contains `query` (all when None).
pub async fn list_users(state: &AppState, query: Option<&str>, page: Page) -> Result<(Vec<UserRow>, u64), StoreError> {
    state.store.list_users(query, page.limit, page.offset).await
}

/// One page of the audit log, newest first.
pub async fn list_audit(state: &AppState, filter: &AuditFilter, page: Page) -> Result<(Vec<AuditEntry>, u64), StoreError> {
    state.store.list_audit(filter, page.limit, page.offset).await
}
