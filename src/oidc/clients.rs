//! Client registration and client authentication at the token, revocation and introspection
//! endpoints. Argon2 is paid once per secret: afterwards a SHA-256 digest of the verified secret
//! is kept in memory, keyed by the stored hash, so rotation or a new hash invalidates it everywhere.
use std::net::IpAddr;

use base64::{engine::general_purpose::STANDARD, Engine};

use super::{claims::SUPPORTED_SCOPES, params::Params};
use crate::{
    atproto::permission::{Permission, TENANT_SCOPE_PREFIX},
    clock::now,
    crypto::secrets::SecretVerifier,
    crypto::{password, random_token, signing::Alg},
    error::OAuthError,
    state::AppState,
    store::{clients::Client, Store, StoreError},
};

/// The credentials a request presented.
enum Presented {
    Secret { client_id: String, secret: String, basic: bool },
    None { client_id: String },
}

/// `authorization`: the raw `Authorization` header, if the request had one.
fn presented_credentials(authorization: Option<&[u8]>, params: &Params) -> Result<Presented, OAuthError> {
    let basic = match authorization {
        Some(value) => {
            let text = std::str::from_utf8(value)
                .ok()
                .filter(|t| t.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)))
                .ok_or_else(|| OAuthError::invalid_client("malformed Authorization header"))?;
            match text.split_once(' ') {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => Some(parse_basic(rest.trim())?),
                _ => None,
            }
        }
        None => None,
    };
    let body_secret = params.get("client_secret");
    let body_client_id = params.get("client_id");
    match (basic, body_secret) {
        (Some(_), Some(_)) => Err(OAuthError::invalid_request("use one client authentication method, not two")),
        (Some((client_id, secret)), None) => {
            if body_client_id.is_some_and(|id| id != client_id) {
                return Err(OAuthError::invalid_request("client_id does not match the Authorization header"));
            }
            Ok(Presented::Secret { client_id, secret, basic: true })
        }
        (None, Some(secret)) => {
            let client_id = body_client_id.ok_or_else(|| OAuthError::invalid_request("client_id is required"))?;
            Ok(Presented::Secret { client_id: client_id.to_owned(), secret: secret.to_owned(), basic: false })
        }
        (None, None) => {
            let client_id = body_client_id.ok_or_else(|| {
                let mut err = OAuthError::invalid_client("client authentication is required");
                err.basic_challenge = true;
                err
            })?;
            Ok(Presented::None { client_id: client_id.to_owned() })
        }
    }
}

/// RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64.
fn parse_basic(encoded: &str) -> Result<(String, String), OAuthError> {
    let bad = || {
        let mut err = OAuthError::invalid_client("malformed Basic credentials");
        err.basic_challenge = true;
        err
    };
    let decoded = STANDARD.decode(encoded).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let id = url_decode(id).ok_or_else(bad)?;
    let secret = url_decode(secret).ok_or_else(bad)?;
    if id.is_empty() {
        return Err(bad());
    }
    Ok((id, secret))
}

fn url_decode(text: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={text}")).ok()?;
    Some(pairs.into_iter().next().map(|(_, v)| v).unwrap_or_default())
}

/// Authenticates the client of a back-channel request. Public clients authenticate with their
/// `client_id` alone (PKCE protects their codes). Failures count against the source address and
/// the client (`limits`); an address or client over its limit is refused before any argon2.
/// `authorization` is the raw `Authorization` header (HTTP Basic, RFC 6749 §2.3.1), if any.
pub async fn authenticate_client(
    state: &AppState,
    authorization: Option<&[u8]>,
    params: &Params,
    source: IpAddr,
) -> Result<Client, OAuthError> {
    let limits = &state.limits;
    limits.client_auth_by_addr.check(&source).map_err(OAuthError::rate_limited)?;
    let presented = presented_credentials(authorization, params)?;
    let (client_id, basic) = match &presented {
        Presented::Secret { client_id, basic, .. } => (client_id.clone(), *basic),
        Presented::None { client_id } => (client_id.clone(), false),
    };
    let failed = |description: &str, client_known: bool| {
        limits.client_auth_by_addr.record_failure(&source);
        if client_known {
            limits.client_auth_by_client.record_failure(&client_id);
        }
        let mut err = OAuthError::invalid_client(description);
        err.basic_challenge = basic;
        err
    };
    let client = match state.store.client(&client_id).await? {
        Some(client) if client.enabled => client,
        _ => return Err(failed("client authentication failed", false)),
    };
    match (presented, &client.secret_hash) {
        (Presented::None { .. }, None) => Ok(client),
        (Presented::None { .. }, Some(_)) => Err(failed("this client must authenticate with its secret", true)),
        (Presented::Secret { .. }, None) => Err(failed("this client is public and has no secret", true)),
        (Presented::Secret { secret, .. }, Some(phc)) => {
            // A secret this node already verified: no argon2, and no client limit (a flood
            // against a client must not lock out the client itself).
            if state.secrets.remembered(&client.client_id, phc, &secret) {
                return Ok(client);
            }
            limits.client_auth_by_client.check(&client.client_id).map_err(OAuthError::rate_limited)?;
            let verified =
                state.secrets.verify(&client.client_id, phc, &secret).await.map_err(|busy| OAuthError::busy(busy.to_string(), 1))?;
            if verified {
                Ok(client)
            } else {
                Err(failed("client authentication failed", true))
            }
        }
    }
}

/// What an admin asks for when registering a client.
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    pub frontchannel_logout_uri: Option<String>,
    pub public: bool,
    pub first_party: bool,
    pub scopes: Option<Vec<String>>,
    /// Exempts a legacy confidential client from PKCE; refused for public clients.
    pub allow_no_pkce: bool,
    /// `RS256` or `ES256` for this client's access tokens, as given (checked with the other
    /// settings); `None` follows `ATSSO_ACCESS_TOKEN_ALG`.
    pub access_token_alg: Option<String>,
    /// Upstream ATProto permissions this client may ask for (`atproto:` prefix optional), as
    /// given; checked and stored canonical, without the prefix.
    pub atproto_scopes: Vec<String>,
}

/// Problems with submitted client settings, by field (every field is checked, not just the first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(pub std::collections::BTreeMap<&'static str, String>);

impl FieldErrors {
    fn add(&mut self, field: &'static str, problem: impl Into<String>) {
        self.0.entry(field).or_insert_with(|| problem.into());
    }
    fn check(&mut self, result: Result<(), RegistrationError>) {
        if let Err(RegistrationError::Invalid(errors)) = result {
            for (field, problem) in errors.0 {
                self.add(field, problem);
            }
        }
    }
    fn into_result(self) -> Result<(), RegistrationError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(RegistrationError::Invalid(self))
        }
    }
}

impl std::fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(field, problem)| format!("{field}: {problem}")).collect();
        f.write_str(&parts.join("; "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("{0}")]
    Invalid(FieldErrors),
    #[error("a client with this name already exists")]
    DuplicateName,
    #[error("no client with this id")]
    UnknownClient,
    #[error(transparent)]
    Store(StoreError),
    #[error("hashing the secret failed")]
    Hash,
}

impl From<StoreError> for RegistrationError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict => Self::DuplicateName,
            other => Self::Store(other),
        }
    }
}

fn invalid(field: &'static str, problem: impl Into<String>) -> RegistrationError {
    let mut errors = FieldErrors::default();
    errors.add(field, problem);
    RegistrationError::Invalid(errors)
}

/// Redirect URIs: absolute, no fragment, no wildcard, no control characters and no leading or
/// trailing whitespace (the URL parser drops or trims those, so the address redirected to would
/// differ from the one registered; an inner space is only percent-encoded), no longer than a
/// request parameter may be; https unless loopback or a native scheme.
pub fn validate_redirect_uri(field: &'static str, uri: &str, public: bool) -> Result<(), RegistrationError> {
    if uri.len() > super::params::MAX_VALUE_LEN {
        return Err(invalid(field, format!("a URI must be at most {} bytes", super::params::MAX_VALUE_LEN)));
    }
    if uri.chars().any(char::is_control) || uri.trim() != uri {
        return Err(invalid(field, format!("`{}` must not contain control characters or surrounding spaces", uri.escape_debug())));
    }
    let parsed = url::Url::parse(uri).map_err(|_| invalid(field, format!("`{uri}` is not an absolute URL")))?;
    if parsed.fragment().is_some() || uri.contains('#') {
        return Err(invalid(field, format!("`{uri}` must not contain a fragment")));
    }
    if uri.contains('*') {
        return Err(invalid(field, format!("`{uri}` must not contain wildcards")));
    }
    let loopback = crate::net::is_loopback_host(&parsed);
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(invalid(field, format!("`{uri}` must use https (http is allowed only for loopback)"))),
        // Private-use schemes (RFC 8252 §7.1) for native public clients.
        scheme if public && scheme.contains('.') => Ok(()),
        _ => Err(invalid(field, format!("`{uri}` has an unsupported scheme"))),
    }
}

/// The settings of a client once checked.
struct Checked {
    scopes: Vec<String>,
    access_token_alg: Option<Alg>,
    atproto_scopes: Vec<String>,
}

/// The algorithms a client may ask for its access tokens (the ones we hold keys for).
pub const ACCESS_TOKEN_ALGS: [Alg; 2] = [Alg::Rs256, Alg::Es256];

/// An access-token algorithm a client asked for: `RS256` or `ES256`, exactly.
pub fn parse_access_token_alg(text: &str) -> Result<Alg, RegistrationError> {
    Alg::parse(text).filter(|alg| ACCESS_TOKEN_ALGS.contains(alg)).ok_or_else(|| {
        let shown: String = text.chars().take(20).collect();
        invalid("access_token_alg", format!("`{}` is not RS256 or ES256", shown.escape_debug()))
    })
}

/// Most upstream ATProto permissions one client may be allowed: the union over all clients
/// becomes the `scope` of atsso's upstream client metadata, which every PDS reads.
pub const MAX_ATPROTO_SCOPES: usize = 50;

/// The ATProto permissions an admin allows a client: each parsed with
/// [`Permission::parse`] (the `atproto:` prefix is optional, surrounding whitespace ignored),
/// stored canonical without the prefix, duplicates after canonicalisation dropped, in the order
/// given. The first malformed one is the field error (quoted with escapes and shortened).
///
/// `include:` permission sets are accepted: the PDS resolves them when atsso asks for them,
/// and the permission module matches an include only by the identical include.
pub fn canonical_atproto_scopes(given: &[String]) -> Result<Vec<String>, RegistrationError> {
    if given.len() > MAX_ATPROTO_SCOPES {
        return Err(invalid("atproto_scopes", format!("at most {MAX_ATPROTO_SCOPES} permissions per client")));
    }
    let mut canonical = Vec::with_capacity(given.len());
    for entry in given {
        let entry = entry.trim();
        let bare = entry.strip_prefix(TENANT_SCOPE_PREFIX).unwrap_or(entry);
        match Permission::parse(bare) {
            Ok(permission) => canonical.push(permission.to_string()),
            Err(err) => {
                let shown: String = bare.chars().take(80).collect();
                let ellipsis = if bare.chars().count() > 80 { "…" } else { "" };
                return Err(invalid("atproto_scopes", format!("`{}{ellipsis}` is not an ATProto permission: {err}", shown.escape_debug())));
            }
        }
    }
    Ok(dedup(canonical))
}

/// A client's allowed ATProto permissions, parsed (what was stored was checked by
/// [`canonical_atproto_scopes`]; anything that no longer parses is left out, never allowed).
pub fn allowed_atproto_permissions(client: &Client) -> Vec<Permission> {
    client.atproto_scopes.iter().filter_map(|stored| Permission::parse(stored).ok()).collect()
}

/// Checks every setting of a client (registration and updates) and normalises the lists.
/// Returns the allowed scopes (the supported ones when none were given) and the access-token
/// algorithm.
fn validate_settings(new: &mut NewClient) -> Result<Checked, RegistrationError> {
    let mut errors = FieldErrors::default();
    new.name = new.name.trim().to_owned();
    if new.name.is_empty() || new.name.chars().count() > 100 {
        errors.add("name", "must be 1 to 100 characters");
    }
    new.redirect_uris = dedup(std::mem::take(&mut new.redirect_uris));
    new.post_logout_redirect_uris = dedup(std::mem::take(&mut new.post_logout_redirect_uris));
    if new.redirect_uris.is_empty() {
        errors.add("redirect_uris", "at least one redirect URI is required");
    }
    if new.redirect_uris.len() > 20 || new.post_logout_redirect_uris.len() > 20 {
        errors.add(if new.redirect_uris.len() > 20 { "redirect_uris" } else { "post_logout_redirect_uris" }, "at most 20 URIs");
    }
    for uri in &new.redirect_uris {
        errors.check(validate_redirect_uri("redirect_uris", uri, new.public));
    }
    for uri in &new.post_logout_redirect_uris {
        errors.check(validate_redirect_uri("post_logout_redirect_uris", uri, new.public));
    }
    if let Some(uri) = &new.backchannel_logout_uri {
        errors.check(validate_redirect_uri("backchannel_logout_uri", uri, false));
        // Deliveries go through the SSRF guard (loopback allowed for admin-registered clients):
        // say so now rather than fail at the first logout.
        if let Ok(url) = url::Url::parse(uri) {
            if let Err(crate::atproto::http::HttpError::Forbidden(reason)) = crate::atproto::http::check_url(&url, true) {
                errors.add("backchannel_logout_uri", format!("`{uri}` cannot receive back-channel logouts ({reason})"));
            }
        }
    }
    if let Some(uri) = &new.frontchannel_logout_uri {
        errors.check(validate_redirect_uri("frontchannel_logout_uri", uri, false));
    }
    if new.public && new.allow_no_pkce {
        errors.add("allow_no_pkce", "public clients must always use PKCE (they have no secret to protect their codes)");
    }
    let scopes = dedup(new.scopes.clone().unwrap_or_else(|| SUPPORTED_SCOPES.iter().map(|s| s.to_string()).collect()));
    if let Some(bad) = scopes.iter().find(|s| !SUPPORTED_SCOPES.contains(&s.as_str())) {
        errors.add("scopes", format!("`{bad}` is not a supported scope"));
    } else if !scopes.iter().any(|s| s == "openid") {
        errors.add("scopes", "must include openid");
    }
    let access_token_alg = match new.access_token_alg.as_deref() {
        None => None,
        Some(text) => match parse_access_token_alg(text) {
            Ok(alg) => Some(alg),
            Err(err) => {
                errors.check(Err(err));
                None
            }
        },
    };
    let atproto_scopes = match canonical_atproto_scopes(&new.atproto_scopes) {
        Ok(canonical) => canonical,
        Err(err) => {
            errors.check(Err(err));
            Vec::new()
        }
    };
    errors.into_result()?;
    Ok(Checked { scopes, access_token_alg, atproto_scopes })
}

/// Registers a client for an admin (CLI, API, UI); returns it and, for confidential clients, the
/// secret (shown once).
pub async fn register(store: &Store, new: NewClient) -> Result<(Client, Option<String>), RegistrationError> {
    register_as(store, new, false).await
}

/// Registers a client through RFC 7591 dynamic registration (recorded: its logout deliveries
/// never go to loopback). The caller checks the logout URIs are public first.
pub async fn register_dynamic(store: &Store, new: NewClient) -> Result<(Client, Option<String>), RegistrationError> {
    register_as(store, new, true).await
}

/// A new client id: 16 random bytes, base64url, never starting with `-` or `_` (an id that
/// starts with `-` reads as a flag to `atsso clients disable <id>` and to most shells' tools).
fn new_client_id() -> String {
    loop {
        let id = random_token(16);
        if id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return id;
        }
    }
}

async fn register_as(
    store: &Store,
    mut new: NewClient,
    dynamically_registered: bool,
) -> Result<(Client, Option<String>), RegistrationError> {
    let Checked { scopes, access_token_alg, atproto_scopes } = validate_settings(&mut new)?;
    let secret = (!new.public).then(|| random_token(32));
    let secret_hash = match &secret {
        Some(secret) => Some(hash(secret.clone()).await?),
        None => None,
    };
    let client = Client {
        client_id: new_client_id(),
        name: new.name,
        secret_hash,
        redirect_uris: new.redirect_uris,
        post_logout_redirect_uris: new.post_logout_redirect_uris,
        backchannel_logout_uri: new.backchannel_logout_uri,
        frontchannel_logout_uri: new.frontchannel_logout_uri,
        first_party: new.first_party,
        allowed_scopes: scopes,
        enabled: true,
        created_at: now(),
        dynamically_registered,
        allow_no_pkce: new.allow_no_pkce,
        access_token_alg,
        atproto_scopes,
    };
    store.insert_client(&client, client.created_at).await?;
    Ok((client, secret))
}

async fn hash(secret: String) -> Result<String, RegistrationError> {
    tokio::task::spawn_blocking(move || password::hash_secret(&secret))
        .await
        .map_err(|_| RegistrationError::Hash)?
        .map_err(|_| RegistrationError::Hash)
}

/// A change to a registered client: `None` leaves a setting as it is. Whether the client is
/// public cannot change (that would invalidate its secret or its redirect URIs).
#[derive(Debug, Clone, Default)]
pub struct ClientUpdate {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// `Some(None)` removes the URI.
    pub backchannel_logout_uri: Option<Option<String>>,
    pub frontchannel_logout_uri: Option<Option<String>>,
    pub first_party: Option<bool>,
    pub scopes: Option<Vec<String>>,
    pub allow_no_pkce: Option<bool>,
    /// `Some(None)` returns the client to the global setting.
    pub access_token_alg: Option<Option<String>>,
    /// Replaces the whole list (an empty list allows none).
    pub atproto_scopes: Option<Vec<String>>,
}

/// Applies an update after checking the resulting settings with the registration rules.
pub async fn update(store: &Store, client_id: &str, change: ClientUpdate) -> Result<Client, RegistrationError> {
    let mut client = store.client(client_id).await?.ok_or(RegistrationError::UnknownClient)?;
    let mut settings = NewClient {
        name: change.name.unwrap_or_else(|| client.name.clone()),
        redirect_uris: change.redirect_uris.unwrap_or_else(|| client.redirect_uris.clone()),
        post_logout_redirect_uris: change.post_logout_redirect_uris.unwrap_or_else(|| client.post_logout_redirect_uris.clone()),
        backchannel_logout_uri: change.backchannel_logout_uri.unwrap_or_else(|| client.backchannel_logout_uri.clone()),
        frontchannel_logout_uri: change.frontchannel_logout_uri.unwrap_or_else(|| client.frontchannel_logout_uri.clone()),
        public: client.is_public(),
        first_party: change.first_party.unwrap_or(client.first_party),
        scopes: Some(change.scopes.unwrap_or_else(|| client.allowed_scopes.clone())),
        allow_no_pkce: change.allow_no_pkce.unwrap_or(client.allow_no_pkce),
        access_token_alg: change.access_token_alg.unwrap_or_else(|| client.access_token_alg.map(|alg| alg.as_str().to_owned())),
        atproto_scopes: change.atproto_scopes.unwrap_or_else(|| client.atproto_scopes.clone()),
    };
    let Checked { scopes, access_token_alg, atproto_scopes } = validate_settings(&mut settings)?;
    client.name = settings.name;
    client.redirect_uris = settings.redirect_uris;
    client.post_logout_redirect_uris = settings.post_logout_redirect_uris;
    client.backchannel_logout_uri = settings.backchannel_logout_uri;
    client.frontchannel_logout_uri = settings.frontchannel_logout_uri;
    client.first_party = settings.first_party;
    client.allowed_scopes = scopes;
    client.allow_no_pkce = settings.allow_no_pkce;
    client.access_token_alg = access_token_alg;
    client.atproto_scopes = atproto_scopes;
    if !store.update_client(&client, now()).await? {
        return Err(RegistrationError::UnknownClient);
    }
    Ok(client)
}

/// Deletes a client: its tokens are revoked and its consents forgotten first.
pub async fn delete(store: &Store, cache: Option<&SecretVerifier>, client_id: &str) -> Result<(), RegistrationError> {
    if !store.delete_client(client_id, now()).await? {
        return Err(RegistrationError::UnknownClient);
    }
    if let Some(cache) = cache {
        cache.forget(client_id);
    }
    Ok(())
}

fn dedup(mut items: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    items.retain(|item| seen.insert(item.clone()));
    items
}

/// Issues a new secret; the old one stops working at once (on every node: the cache is keyed
/// by the stored hash).
pub async fn rotate_secret(store: &Store, cache: Option<&SecretVerifier>, client_id: &str) -> Result<String, RegistrationError> {
    let client = store.client(client_id).await?.ok_or(RegistrationError::UnknownClient)?;
    if client.is_public() {
        return Err(invalid("client_id", "public clients have no secret"));
    }
    let secret = random_token(32);
    let hash = hash(secret.clone()).await?;
    store.set_client_secret_hash(client_id, &hash, now()).await?;
    if let Some(cache) = cache {
        cache.forget(client_id);
    }
    Ok(secret)
}

pub async fn set_enabled(store: &Store, cache: Option<&SecretVerifier>, client_id: &str, enabled: bool) -> Result<(), RegistrationError> {
    if !store.set_client_enabled(client_id, enabled, now()).await? {
        return Err(RegistrationError::UnknownClient);
    }
    if let Some(cache) = cache {
        cache.forget(client_id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn client_ids_never_start_like_a_command_line_flag() {
        for _ in 0..2_000 {
            let id = new_client_id();
            assert!(id.starts_with(|c: char| c.is_ascii_alphanumeric()), "{id}");
            assert_eq!(id.len(), 22);
        }
    }

    use super::*;

    #[test]
    fn redirect_uri_rules() {
        assert!(validate_redirect_uri("r", "https://app.example/cb", false).is_ok());
        assert!(validate_redirect_uri("r", "http://127.0.0.1:3000/cb", false).is_ok());
        assert!(validate_redirect_uri("r", "http://localhost/cb", false).is_ok());
        assert!(validate_redirect_uri("r", "http://app.example/cb", false).is_err());
        assert!(validate_redirect_uri("r", "https://app.example/cb#x", false).is_err());
        assert!(validate_redirect_uri("r", "https://*.example/cb", false).is_err());
        assert!(validate_redirect_uri("r", "/relative", false).is_err());
        assert!(validate_redirect_uri("r", "com.example.app:/cb", true).is_ok());
        assert!(validate_redirect_uri("r", "com.example.app:/cb", false).is_err());
        assert!(validate_redirect_uri("r", "javascript:alert(1)", true).is_err());
    }

    #[test]
    fn backchannel_uris_on_private_addresses_are_refused_loopback_is_not() {
        let with = |uri: &str| NewClient {
            name: "x".into(),
            redirect_uris: vec!["https://app.example/cb".into()],
            backchannel_logout_uri: Some(uri.into()),
            ..Default::default()
        };
        for private in ["https://10.0.0.5/bc", "https://169.254.169.254/latest", "https://[fd00::1]/bc", "https://192.168.1.1/bc"] {
            let Err(RegistrationError::Invalid(errors)) = validate_settings(&mut with(private)) else { panic!("{private} must fail") };
            assert!(errors.0["backchannel_logout_uri"].contains("cannot receive back-channel logouts"), "{private}");
        }
        for fine in ["https://app.example/bc", "http://127.0.0.1:3000/bc", "http://localhost:3000/bc"] {
            assert!(validate_settings(&mut with(fine)).is_ok(), "{fine}");
        }
    }

    #[test]
    fn every_bad_field_is_reported() {
        let mut new = NewClient {
            name: " ".into(),
            redirect_uris: vec!["http://app.example/cb".into()],
            post_logout_redirect_uris: vec!["https://app.example/#x".into()],
            scopes: Some(vec!["profile".into()]),
            ..Default::default()
        };
        let Err(RegistrationError::Invalid(errors)) = validate_settings(&mut new) else { panic!("must fail") };
        let fields: Vec<_> = errors.0.keys().copied().collect();
        assert_eq!(fields, ["name", "post_logout_redirect_uris", "redirect_uris", "scopes"]);
    }

    fn permissions(given: &[&str]) -> Result<Vec<String>, RegistrationError> {
        canonical_atproto_scopes(&given.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn atproto_scopes_error(given: &[&str]) -> String {
        match permissions(given) {
            Err(RegistrationError::Invalid(errors)) => errors.0.get("atproto_scopes").cloned().expect("an atproto_scopes error"),
            other => panic!("{given:?} must be refused, got {other:?}"),
        }
    }

    #[test]
    fn atproto_permissions_are_stored_canonical_without_the_prefix_and_deduplicated() {
        let stored = permissions(&[
            "atproto:repo:com.example.post?action=create",
            "repo?collection=com.example.note",
            " atproto:blob:image/* ",
            "atproto:repo:com.example.note",
            "rpc?lxm=app.bsky.feed.getTimeline&aud=did:web:api.bsky.app%23bsky_appview",
            "include:com.example.authFull",
        ])
        .unwrap();
        assert_eq!(
            stored,
            [
                "repo:com.example.post?action=create",
                "repo:com.example.note",
                "blob:image/*",
                "rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview",
                "include:com.example.authFull",
            ]
        );
        assert_eq!(permissions(&[]).unwrap(), Vec::<String>::new());
        // What is stored parses again to itself (it is split on spaces when read back).
        for canonical in &stored {
            assert!(!canonical.contains(' '));
            assert_eq!(&crate::atproto::permission::Permission::parse(canonical).unwrap().to_string(), canonical);
        }
    }

    #[test]
    fn a_malformed_atproto_permission_is_a_field_error_naming_it() {
        for (given, says) in [
            ("repo:not-an-nsid", "`repo:not-an-nsid`"),
            ("atproto:repo:com.example.post?action=publish", "`repo:com.example.post?action=publish`"),
            ("atproto", "`atproto`"),
            ("transition:generic", "unknown resource"),
            ("rpc:*?aud=*", "any method at any service"),
            ("", "empty"),
            ("atproto:", "empty"),
            ("repo:com.exa\nmple.post", "not allowed"),
        ] {
            let problem = atproto_scopes_error(&["repo:com.example.ok", given]);
            assert!(problem.contains(says), "{given:?}: {problem}");
        }
        // Control characters never reach the message (it is shown on a page and logged).
        let problem = atproto_scopes_error(&["repo:com.example.post\u{1b}[31m"]);
        assert!(!problem.chars().any(char::is_control), "{problem:?}");
        // A long entry is not echoed in full.
        let problem = atproto_scopes_error(&[&format!("repo:{}", "a".repeat(5000))]);
        assert!(problem.len() < 400, "{}", problem.len());
    }

    #[test]
    fn a_clients_allowed_permissions_parse_and_cover_what_they_name() {
        use crate::atproto::permission::{covers, from_tenant_scope};
        let client = Client {
            client_id: "c".into(),
            name: "c".into(),
            secret_hash: None,
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            backchannel_logout_uri: None,
            frontchannel_logout_uri: None,
            first_party: false,
            allowed_scopes: vec![],
            enabled: true,
            created_at: 0,
            dynamically_registered: false,
            allow_no_pkce: false,
            access_token_alg: None,
            atproto_scopes: permissions(&["repo:com.example.note", "blob:image/*"]).unwrap(),
        };
        let allowed = allowed_atproto_permissions(&client);
        assert_eq!(allowed.len(), 2);
        let asked = |scope: &str| from_tenant_scope(scope).unwrap().unwrap();
        assert!(covers(&allowed, &asked("atproto:repo:com.example.note?action=create")));
        assert!(covers(&allowed, &asked("atproto:blob:image/png")));
        assert!(!covers(&allowed, &asked("atproto:repo:com.example.post")));
    }

    #[test]
    fn a_client_may_be_allowed_a_bounded_number_of_atproto_permissions() {
        let many: Vec<String> = (0..=MAX_ATPROTO_SCOPES).map(|i| format!("repo:com.example.c{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(atproto_scopes_error(&refs).contains(&format!("at most {MAX_ATPROTO_SCOPES}")));
        assert_eq!(permissions(&refs[..MAX_ATPROTO_SCOPES]).unwrap().len(), MAX_ATPROTO_SCOPES);
    }

    #[test]
    fn atproto_permissions_are_checked_with_the_other_settings() {
        let mut new = NewClient {
            name: "x".into(),
            redirect_uris: vec!["https://app.example/cb".into()],
            atproto_scopes: vec!["atproto:repo:com.example.post".into(), "repo:com.example.post".into()],
            ..Default::default()
        };
        let checked = validate_settings(&mut new).unwrap();
        assert_eq!(checked.atproto_scopes, ["repo:com.example.post"]);
        new.atproto_scopes = vec!["repo:bad".into()];
        new.name = " ".into();
        let Err(RegistrationError::Invalid(errors)) = validate_settings(&mut new) else { panic!("must fail") };
        assert_eq!(errors.0.keys().copied().collect::<Vec<_>>(), ["atproto_scopes", "name"]);
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        /// URI-ish text: schemes, hosts (loopback or not), ports, paths, and the characters that
        /// matter (`#`, `*`, `@`, `\\`, `%`, whitespace, controls, non-ASCII).
        fn uri_like() -> impl Strategy<Value = String> {
            let scheme =
                prop_oneof![Just("https://"), Just("http://"), Just("com.example.app:/"), Just("javascript:"), Just(""), Just("HTTPS://")];
            let host = prop_oneof![
                Just("app.example"),
                Just("localhost"),
                Just("127.0.0.1"),
                Just("[::1]"),
                Just("127.0.0.1.evil.example"),
                Just("user@app.example"),
                Just(""),
            ];
            let tail = proptest::collection::vec(
                prop_oneof![
                    "[a-z0-9/._~-]{1,8}",
                    Just("#".to_owned()),
                    Just("*".to_owned()),
                    Just("?x=1".to_owned()),
                    Just(":8080".to_owned()),
                    Just("%2F".to_owned()),
                    Just("\\".to_owned()),
                    any::<char>().prop_map(String::from),
                ],
                0..6,
            );
            (scheme, host, tail).prop_map(|(scheme, host, tail)| format!("{scheme}{host}{}", tail.concat()))
        }

        proptest! {
            /// Any text, public or not: Ok, or an `Invalid` error naming the field with a message;
            /// never a panic. What passes is an absolute URL without fragment, wildcard, control
            /// characters or surrounding whitespace, short enough to be sent back to us, with
            /// https, http on loopback, or (public clients) a private-use scheme.
            #[test]
            fn any_text_is_accepted_only_when_it_follows_the_rules(uri in prop_oneof![any::<String>(), uri_like()], public in any::<bool>()) {
                match validate_redirect_uri("redirect_uris", &uri, public) {
                    Ok(()) => {
                        let parsed = url::Url::parse(&uri);
                        prop_assert!(parsed.is_ok());
                        let parsed = parsed.unwrap();
                        prop_assert!(!uri.contains('#') && !uri.contains('*'));
                        prop_assert!(!uri.chars().any(char::is_control) && uri.trim() == uri, "control or surrounding space in {uri:?}");
                        prop_assert!(uri.len() <= crate::oidc::params::MAX_VALUE_LEN);
                        let loopback = crate::net::is_loopback_host(&parsed);
                        match parsed.scheme() {
                            "https" => {}
                            "http" => prop_assert!(loopback, "http to {:?}", parsed.host_str()),
                            scheme => prop_assert!(public && scheme.contains('.'), "scheme {scheme}"),
                        }
                    }
                    Err(RegistrationError::Invalid(errors)) => {
                        let problem = errors.0.get("redirect_uris");
                        prop_assert!(problem.is_some_and(|p| !p.is_empty()), "{errors:?}");
                    }
                    Err(other) => prop_assert!(false, "unexpected error kind: {other}"),
                }
            }

            /// Ordinary https URIs pass, for both kinds of client.
            #[test]
            fn https_uris_pass(host in "[a-z]{1,12}(\\.[a-z]{1,8}){1,3}", path in "(/[a-zA-Z0-9._~-]{0,10}){0,4}", query in proptest::option::of("[a-z]{1,5}=[a-z0-9]{0,5}"), public in any::<bool>()) {
                let uri = match query {
                    Some(query) => format!("https://{host}{path}?{query}"),
                    None => format!("https://{host}{path}"),
                };
                prop_assert!(validate_redirect_uri("redirect_uris", &uri, public).is_ok(), "{uri}");
            }

            /// http is for loopback only, whatever the host looks like.
            #[test]
            fn http_outside_loopback_is_refused(host in "[a-z0-9.-]{1,20}", path in "(/[a-z]{0,6}){0,3}") {
                prop_assume!(!url::Url::parse(&format!("http://{host}/")).is_ok_and(|u| crate::net::is_loopback_host(&u)));
                let uri = format!("http://{host}{path}");
                prop_assert!(validate_redirect_uri("redirect_uris", &uri, false).is_err(), "{uri}");
            }

            /// A fragment or a wildcard anywhere is refused.
            #[test]
            fn fragments_and_wildcards_are_refused(path in "[a-z/]{0,10}", bad in prop_oneof![Just('#'), Just('*')], rest in "[a-z/]{0,10}") {
                let uri = format!("https://app.example/{path}{bad}{rest}");
                prop_assert!(validate_redirect_uri("redirect_uris", &uri, true).is_err());
            }

            /// Control characters anywhere and whitespace around the URI are refused: the URL
            /// parser silently drops or trims them, so the URI we redirect to would not be the
            /// one registered. (An inner space is only percent-encoded: allowed.)
            #[test]
            fn controls_and_surrounding_whitespace_are_refused(
                at in 8usize..20,
                control in prop_oneof![Just('\t'), Just('\n'), Just('\r'), Just('\u{0}'), Just('\u{7f}'), Just('\u{85}')],
                space in prop_oneof![Just(' '), Just('\t'), Just('\u{a0}'), Just('\u{3000}')],
            ) {
                let mut uri = "https://app.example/callback".to_owned();
                uri.insert(at, control);
                prop_assert!(validate_redirect_uri("redirect_uris", &uri, false).is_err(), "{uri:?}");
                for padded in [format!("https://app.example/cb{space}"), format!("{space}https://app.example/cb")] {
                    prop_assert!(validate_redirect_uri("redirect_uris", &padded, false).is_err(), "{padded:?}");
                }
                prop_assert!(validate_redirect_uri("redirect_uris", "https://app.example/my app/cb", false).is_ok());
            }
        }
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let encoded = STANDARD.encode("my%20client:p%3Ass");
        assert_eq!(parse_basic(&encoded).unwrap(), ("my client".into(), "p:ss".into()));
        assert!(parse_basic("!!!").is_err());
        assert!(parse_basic(&STANDARD.encode("nocolon")).is_err());
    }
}
