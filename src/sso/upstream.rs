//! Turning an ATProto login into an SSO session, and keeping the upstream grant alive:
//! pending logins are sealed, single-use, expiring and bound to the browser that started them;
//! upstream sessions are sealed, refreshed under a compare-and-swap (refresh tokens are
//! single-use upstream), marked dead when a refresh fails, and revoked at logout.
use crate::{
    atproto::{AtprotoError, CallbackParams, PendingLogin, UpstreamTokens},
    crypto::sha256_b64,
    state::{now, AppState},
    store::{
        sessions::SsoSession,
        upstream::{UpstreamLoginRow, UpstreamSessionRow},
        users::UserProfile,
        StoreError,
    },
};

use super::EstablishedSession;

/// How long a user has to finish signing in at their PDS.
pub const LOGIN_STATE_TTL_SECS: i64 = 600;
/// Refresh the upstream access token this long before it expires.
const REFRESH_MARGIN_SECS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(transparent)]
    Upstream(#[from] AtprotoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sealing: {0}")]
    Seal(String),
    /// Unknown, expired or already used `state`.
    #[error("unknown or expired login state")]
    UnknownState,
    /// The callback arrived in another browser than the one that started the login.
    #[error("login state bound to another browser")]
    WrongBrowser,
}

impl LoginError {
    /// Plain words for the login page.
    pub fn user_message(&self) -> String {
        match self {
            Self::Upstream(err) => err.user_message(),
            Self::UnknownState | Self::WrongBrowser => {
                "This sign-in attempt expired or was not started in this browser. Please start again.".into()
            }
            Self::Store(_) | Self::Seal(_) => "Sign-in is temporarily unavailable. Please try again later.".into(),
        }
    }
}

/// A finished login: the session to put in the cookie and the authorization request to resume.
pub struct FinishedLogin {
    pub session: EstablishedSessionOrExisting,
    pub request_id: Option<String>,
}

pub enum EstablishedSessionOrExisting {
    New(EstablishedSession),
    /// The browser's session for the same DID, re-authenticated.
    Existing(SsoSession),
}

impl EstablishedSessionOrExisting {
    pub fn session(&self) -> &SsoSession {
        match self {
            Self::New(new) => &new.session,
            Self::Existing(existing) => existing,
        }
    }
}

/// Starts an upstream login and returns the PDS authorization URL to send the browser to.
pub async fn begin_login(state: &AppState, input: &str, request_id: Option<&str>, browser_csrf: &str) -> Result<String, LoginError> {
    let pending = state.atproto.start_login(input).await?;
    let json = serde_json::to_string(&pending).map_err(|e| LoginError::Seal(e.to_string()))?;
    let sealed = state.sealer.seal_str(&json).map_err(|e| LoginError::Seal(e.to_string()))?;
    let created = now();
    state
        .store
        .insert_upstream_login(&UpstreamLoginRow {
            state: pending.state.clone(),
            request_id: request_id.map(String::from),
            browser_binding: sha256_b64(browser_csrf),
            pending_sealed: sealed,
            created_at: created,
            expires_at: created + LOGIN_STATE_TTL_SECS,
        })
        .await?;
    Ok(pending.authorization_url)
}

/// What the callback knows before the exchange (for access_denied and retries).
pub struct TakenLogin {
    pub pending: PendingLogin,
    pub request_id: Option<String>,
}

/// Consumes the pending login named by `state` (single use) if it belongs to this browser.
pub async fn take_login(state: &AppState, login_state: &str, browser_csrf: Option<&str>) -> Result<TakenLogin, LoginError> {
    let row = state.store.take_upstream_login(login_state).await?.ok_or(LoginError::UnknownState)?;
    if row.expires_at <= now() {
        return Err(LoginError::UnknownState);
    }
    let bound =
        browser_csrf.is_some_and(|csrf| crate::crypto::constant_time_eq(sha256_b64(csrf).as_bytes(), row.browser_binding.as_bytes()));
    if !bound {
        return Err(LoginError::WrongBrowser);
    }
    let json = state.sealer.open_str(&row.pending_sealed).map_err(|e| LoginError::Seal(e.to_string()))?;
    let pending: PendingLogin = serde_json::from_str(&json).map_err(|e| LoginError::Seal(e.to_string()))?;
    Ok(TakenLogin { pending, request_id: row.request_id })
}

/// Completes the upstream login (all checks are the ATProto client's), records the user, and
/// opens the SSO session — or re-authenticates the browser's session for the same DID.
pub async fn finish_login(
    state: &AppState,
    taken: &TakenLogin,
    params: &CallbackParams,
    current: Option<SsoSession>,
) -> Result<EstablishedSessionOrExisting, LoginError> {
    let result = state.atproto.complete_login(&taken.pending, params).await?;
    let identity = result.identity;
    let profile = UserProfile {
        did: identity.did.clone(),
        handle: identity.handle.clone(),
        display_name: identity.display_name.clone(),
        avatar: identity.avatar.clone(),
        email: identity.email.clone(),
        email_verified: identity.email_verified,
    };
    let now = now();
    let session = match current {
        Some(existing) if existing.did == identity.did => {
            state.store.upsert_user(&profile, now).await?;
            state.store.touch_session_auth_time(&existing.sid, now).await?;
            // The grant the session held until now is replaced: end it upstream too.
            revoke_upstream(state, &existing.sid).await;
            let mut refreshed = existing;
            refreshed.auth_time = now;
            EstablishedSessionOrExisting::Existing(refreshed)
        }
        other => {
            if let Some(previous) = other {
                // Another account signs in in this browser: the previous session ends entirely.
                crate::sso::logout::end_session(state, &previous.sid).await?;
            }
            EstablishedSessionOrExisting::New(super::establish_session(state, &profile).await?)
        }
    };
    store_upstream_session(state, &session.session().sid, &result.session).await?;
    Ok(session)
}

async fn store_upstream_session(state: &AppState, sid: &str, tokens: &UpstreamTokens) -> Result<(), LoginError> {
    let json = serde_json::to_string(tokens).map_err(|e| LoginError::Seal(e.to_string()))?;
    let sealed = state.sealer.seal_str(&json).map_err(|e| LoginError::Seal(e.to_string()))?;
    let now = now();
    state
        .store
        .upsert_upstream_session(&UpstreamSessionRow {
            sid: sid.to_owned(),
            did: tokens.sub.clone(),
            tokens_sealed: sealed,
            expires_at: tokens.expires_at.map(|t| t as i64),
            dead: false,
            version: 0,
            created_at: now,
            updated_at: now,
        })
        .await?;
    Ok(())
}

fn open_tokens(state: &AppState, row: &UpstreamSessionRow) -> Option<UpstreamTokens> {
    let json = state.sealer.open_str(&row.tokens_sealed).ok()?;
    serde_json::from_str(&json).ok()
}

/// True when the SSO session's upstream grant is usable, refreshing it when it has expired.
/// Sessions without an upstream grant (none recorded) are usable. A failed refresh marks the
/// grant dead, which ends the usefulness of the session: the user must sign in again.
pub async fn upstream_usable(state: &AppState, session: &SsoSession) -> Result<bool, StoreError> {
    let Some(row) = state.store.upstream_session(&session.sid).await? else {
        return Ok(true);
    };
    if row.dead {
        return Ok(false);
    }
    let now = now();
    if row.expires_at.is_none_or(|expires| expires > now + REFRESH_MARGIN_SECS) {
        return Ok(true);
    }
    let Some(tokens) = open_tokens(state, &row) else {
        tracing::error!("upstream session cannot be unsealed; marking it dead");
        state.store.mark_upstream_session_dead(&row.sid, now).await?;
        return Ok(false);
    };
    match state.atproto.refresh(&tokens).await {
        Ok(fresh) => {
            let json = serde_json::to_string(&fresh).unwrap_or_default();
            let Ok(sealed) = state.sealer.seal_str(&json) else {
                return Ok(false);
            };
            // If another request or node refreshed first, its tokens stand; ours are discarded
            // (the AS already rotated the refresh token we used, so the CAS loser's are the same grant).
            state.store.swap_upstream_tokens(&row.sid, row.version, &sealed, fresh.expires_at.map(|t| t as i64), now).await?;
            Ok(true)
        }
        Err(error) => {
            tracing::warn!(%error, "upstream refresh failed; the session needs a new sign-in");
            state.store.mark_upstream_session_dead(&row.sid, now).await?;
            Ok(false)
        }
    }
}

/// Revokes the upstream grant of an SSO session at the user's authorization server and forgets
/// it. Best effort: failures are logged, the local record is deleted regardless.
pub async fn revoke_upstream(state: &AppState, sid: &str) {
    let row = match state.store.upstream_session(sid).await {
        Ok(Some(row)) => row,
        Ok(None) => return,
        Err(error) => {
            tracing::error!(%error, "loading the upstream session failed");
            return;
        }
    };
    if let Some(tokens) = open_tokens(state, &row) {
        if let Err(error) = state.atproto.revoke(&tokens).await {
            tracing::warn!(%error, "revoking the upstream grant failed");
        }
    }
    if let Err(error) = state.store.delete_upstream_session(sid).await {
        tracing::error!(%error, "deleting the upstream session failed");
    }
}
