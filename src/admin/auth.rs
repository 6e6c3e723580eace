//! Admin identity. Two ways in:
//! - people: an SSO session (signed in through atsso's own ATProto login) whose DID is listed in
//!   `ATSSO_ADMIN_DIDS` — the web UI;
//! - automation: an admin API token, `Authorization: Bearer atsso_<id>.<secret>` — the REST API.
//!   Tokens are created by `atsso admin-tokens create`, shown once, stored argon2-hashed, revocable.
//!   `registration` tokens are RFC 7591 initial access tokens and open nothing else.
use crate::{
    clock::now,
    config::Config,
    crypto::{password, random_token, secrets::SecretVerifier},
    store::{admin::AdminTokenRow, Store, StoreError},
};

const PREFIX: &str = "atsso_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// The admin REST API (and dynamic registration).
    Admin,
    /// Dynamic client registration only.
    Registration,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Registration => "registration",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("an admin token is required (Authorization: Bearer ...)")]
    Missing,
    #[error("the admin token is not valid (unknown, malformed or revoked)")]
    Invalid,
    #[error("this token may not be used here")]
    WrongKind,
    #[error("token name: {0}")]
    BadName(String),
    #[error("a token with this name already exists")]
    DuplicateName,
    #[error(transparent)]
    Store(StoreError),
    #[error("hashing the token failed")]
    Hash,
    #[error("too many token checks at once; try again shortly")]
    Busy,
}

impl From<StoreError> for TokenError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict => Self::DuplicateName,
            other => Self::Store(other),
        }
    }
}

/// A verified token.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub id: String,
    pub name: String,
    pub kind: TokenKind,
}

impl VerifiedToken {
    /// How the audit log names this caller.
    pub fn actor_name(&self) -> String {
        format!("token:{}", self.name)
    }
}

/// Creates a token and returns it; only its hash is stored, so this is the one time it is seen.
pub async fn create_token(store: &Store, name: &str, kind: TokenKind) -> Result<String, TokenError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(TokenError::BadName("use 1 to 64 letters, digits, `-`, `_` or `.`".into()));
    }
    let id = random_token(9);
    let secret = random_token(32);
    let to_hash = secret.clone();
    let token_hash = tokio::task::spawn_blocking(move || password::hash_secret(&to_hash))
        .await
        .map_err(|_| TokenError::Hash)?
        .map_err(|_| TokenError::Hash)?;
    store
        .insert_admin_token(&AdminTokenRow {
            id: id.clone(),
            name: name.to_owned(),
            kind: kind.as_str().to_owned(),
            token_hash,
            created_at: now(),
            last_used_at: None,
            revoked_at: None,
        })
        .await?;
    Ok(format!("{PREFIX}{id}.{secret}"))
}

/// Verifies a presented token and that its kind is one of `accepted`.
/// Argon2 is paid once per token and node (`SecretVerifier`, keyed `admin-token:<id>` and the
/// stored hash); revocation is checked against the database on every use.
pub async fn verify_token(
    store: &Store,
    secrets: &SecretVerifier,
    presented: &str,
    accepted: &[TokenKind],
) -> Result<VerifiedToken, TokenError> {
    let (id, secret) = presented
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('.'))
        .filter(|(id, secret)| !id.is_empty() && id.len() <= 32 && !secret.is_empty() && secret.len() <= 64)
        .ok_or(TokenError::Invalid)?;
    let row = store.admin_token(id).await?.filter(|row| row.revoked_at.is_none()).ok_or(TokenError::Invalid)?;
    let verified = secrets.verify(&format!("admin-token:{id}"), &row.token_hash, secret).await.map_err(|_| TokenError::Busy)?;
    if !verified {
        return Err(TokenError::Invalid);
    }
    let kind = match row.kind.as_str() {
        "admin" => TokenKind::Admin,
        _ => TokenKind::Registration,
    };
    if !accepted.contains(&kind) {
        return Err(TokenError::WrongKind);
    }
    store.touch_admin_token(id, now()).await?;
    Ok(VerifiedToken { id: row.id, name: row.name, kind })
}

/// True when this DID may use the admin UI.
pub fn is_admin_did(config: &Config, did: &str) -> bool {
    config.admin_dids.iter().any(|admin| admin == did)
}
