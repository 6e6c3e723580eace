//! Turning an ATProto login into an SSO session, and keeping the upstream grant alive:
//! pending logins are sealed, single-use, expiring and bound to the browser that started them;
//! upstream sessions are sealed, refreshed by one request at a time across nodes (a lease on the
//! row: refresh tokens are single-use upstream), end the SSO session when the authorization
//! server refuses a refresh, and are revoked at logout.
use std::time::Duration;

use tokio::time::Instant;

use crate::{
    atproto::{permission::Permission, AtprotoError, CallbackParams, PendingLogin, UpstreamTokens},
    clock::now,
    crypto::{random_token, sha256_b64},
    state::AppState,
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
/// How long a session without an upstream grant (or one without an expiry) is taken as usable
/// before its row is read again.
const NO_GRANT_RECHECK_SECS: i64 = 60;
/// How long the holder of a refresh lease may take before another request may take it over.
/// Well above [`REFRESH_CALL_TIMEOUT`], so a lease never runs out while its PDS call can still
/// succeed (unless the database stalls for longer than the difference).
const REFRESH_LEASE_SECS: i64 = 30;
/// The most the refresh call at the authorization server may take (it makes up to two
/// requests of at most 5 s each: the DPoP nonce retry).
const REFRESH_CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a request waiting for another's refresh looks at the row, and for how long.
const LEASE_POLL: Duration = Duration::from_millis(75);
const LEASE_WAIT: Duration = Duration::from_secs(3);

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
    /// A fixed name of the failure (the `reason` label of `atsso_logins_total`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Upstream(err) => err.kind(),
            Self::Store(_) => "store",
            Self::Seal(_) => "seal",
            Self::UnknownState => "unknown_state",
            Self::WrongBrowser => "wrong_browser",
        }
    }

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

/// Starts an upstream login asking for the configured scope plus `permissions` (canonical
/// atproto permissions a tenant app needs) and returns the PDS authorization URL to send the
/// browser to.
pub async fn begin_login(
    state: &AppState,
    input: &str,
    request_id: Option<&str>,
    browser_id: &str,
    permissions: &[String],
) -> Result<String, LoginError> {
    let pending = state.atproto.start_login(input, permissions).await?;
    let json = serde_json::to_string(&pending).map_err(|e| LoginError::Seal(e.to_string()))?;
    let sealed = state.sealer.seal_str(&json).map_err(|e| LoginError::Seal(e.to_string()))?;
    let created = now();
    state
        .store
        .insert_upstream_login(&UpstreamLoginRow {
            state: pending.state.clone(),
            request_id: request_id.map(String::from),
            browser_binding: sha256_b64(browser_id),
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
pub async fn take_login(state: &AppState, login_state: &str, browser_id: Option<&str>) -> Result<TakenLogin, LoginError> {
    let row = state.store.take_upstream_login(login_state).await?.ok_or(LoginError::UnknownState)?;
    if row.expires_at <= now() {
        return Err(LoginError::UnknownState);
    }
    let bound = browser_id.is_some_and(|id| crate::crypto::constant_time_eq(sha256_b64(id).as_bytes(), row.browser_binding.as_bytes()));
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
            // The grant the session held until now is replaced: end it upstream too (queued).
            super::grant::queue_upstream_revoke(state, &existing.sid).await?;
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
            refresh_lease_until: None,
            refresh_lease_owner: None,
        })
        .await?;
    Ok(())
}

/// The atproto permissions the SSO session `sid`'s upstream grant holds; `None` when it has no
/// upstream grant (or its tokens cannot be unsealed).
pub async fn upstream_permissions(state: &AppState, sid: &str) -> Result<Option<Vec<Permission>>, StoreError> {
    Ok(upstream_tokens(state, sid).await?.map(|tokens| tokens.permissions()))
}

/// What an SSO session's upstream grant allows now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamGrant {
    /// Usable: fresh, just refreshed (by this request or another), or none recorded.
    Usable,
    /// Not confirmed now: the user's authorization server could not be reached or is in trouble,
    /// or another request's refresh is taking long. Nothing was ended; a later request tries again.
    Unavailable,
    /// The user's authorization server refused the grant (revoked, account deactivated or taken
    /// down): the SSO session has been ended with single logout.
    Ended,
}

/// The state of the SSO session `sid`'s upstream grant, refreshing it first when its access
/// token has expired (or is about to).
///
/// The PDS's refresh token is single use, so one request at a time, across every node, spends
/// it: the request that takes the row's refresh lease (a compare-and-set in the database) calls
/// the authorization server and stores the new tokens; the others poll the row every
/// [`LEASE_POLL`] for at most [`LEASE_WAIT`] and use the winner's tokens once the row's version
/// changes, or give up softly ([`UpstreamGrant::Unavailable`]). A refusal by the authorization
/// server ends the SSO session (tokens revoked, back-channel logout); a transient failure ends
/// nothing.
///
/// The caller has checked that the session is live. A grant seen usable is remembered until its
/// access token is due for refresh (one row read saved per tenant refresh and authorization);
/// a session without an upstream grant (signed in through a seam) is looked at again after
/// `NO_GRANT_RECHECK_SECS`.
pub async fn upstream_grant(state: &AppState, sid: &str) -> Result<UpstreamGrant, StoreError> {
    if state.store.upstream_usable_until(sid).is_some_and(|until| until > now()) {
        return Ok(UpstreamGrant::Usable);
    }
    let seen = state.store.cache_generation();
    let deadline = Instant::now() + LEASE_WAIT;
    let mut first_version = None;
    let mut saw_other_holder = false;
    loop {
        let Some(row) = state.store.upstream_session(sid).await? else {
            state.store.remember_upstream_usable_until(sid, now() + NO_GRANT_RECHECK_SECS, seen);
            return Ok(UpstreamGrant::Usable);
        };
        if row.dead {
            // Refused earlier, but the single logout did not finish: finish it (idempotent).
            super::logout::end_session(state, sid).await?;
            return Ok(UpstreamGrant::Ended);
        }
        let now = now();
        if row.expires_at.is_none_or(|expires| expires > now.saturating_add(REFRESH_MARGIN_SECS)) {
            let until = row.expires_at.map_or(now + NO_GRANT_RECHECK_SECS, |expires| expires - REFRESH_MARGIN_SECS);
            state.store.remember_upstream_usable_until(sid, until, seen);
            return Ok(UpstreamGrant::Usable);
        }
        // Another request stored fresh tokens while we waited: use them (even if the
        // authorization server hands out tokens shorter-lived than our margin).
        if *first_version.get_or_insert(row.version) != row.version {
            return Ok(UpstreamGrant::Usable);
        }
        if row.refresh_lease_until.is_none_or(|until| until <= now) {
            if saw_other_holder {
                // The refresh we waited for ended without new tokens: it failed for now. Do not
                // line up behind it to call the PDS again, one request after another.
                return Ok(UpstreamGrant::Unavailable);
            }
            let owner = random_token(12);
            if state.store.take_refresh_lease(sid, row.version, &owner, now, now + REFRESH_LEASE_SECS).await? {
                if let Some(outcome) = refresh_under_lease(state, &row, &owner).await? {
                    return Ok(outcome);
                }
            }
            // Taken by someone else between our read and our write, or our lease ran out and the
            // row changed meanwhile: look again.
        } else {
            saw_other_holder = true;
        }
        if Instant::now() >= deadline {
            tracing::warn!("another request's upstream refresh is taking long; the session is not usable for now");
            return Ok(UpstreamGrant::Unavailable);
        }
        tokio::time::sleep(LEASE_POLL).await;
    }
}

/// The upstream tokens of the SSO session `sid` as stored now (call [`upstream_grant`] first so
/// they are fresh). `None` when the session has no upstream grant or it cannot be unsealed.
pub async fn upstream_tokens(state: &AppState, sid: &str) -> Result<Option<UpstreamTokens>, StoreError> {
    let Some(row) = state.store.upstream_session(sid).await? else {
        return Ok(None);
    };
    Ok(super::grant::open_tokens(state, &row))
}

/// Calls the authorization server while holding the refresh lease taken on `row`'s version.
/// `None`: our lease ran out and someone else changed the row meanwhile; look at it again.
async fn refresh_under_lease(state: &AppState, row: &UpstreamSessionRow, owner: &str) -> Result<Option<UpstreamGrant>, StoreError> {
    let Some(tokens) = super::grant::open_tokens(state, row) else {
        tracing::error!("upstream session cannot be unsealed; ending the session");
        return refused(state, row, owner).await;
    };
    match tokio::time::timeout(REFRESH_CALL_TIMEOUT, state.atproto.refresh(&tokens)).await {
        Ok(Ok(fresh)) => {
            let sealed = match serde_json::to_string(&fresh)
                .map_err(|e| e.to_string())
                .and_then(|json| state.sealer.seal_str(&json).map_err(|e| e.to_string()))
            {
                Ok(sealed) => sealed,
                Err(error) => {
                    tracing::error!(%error, "sealing refreshed upstream tokens failed");
                    state.store.release_refresh_lease(&row.sid, owner).await?;
                    return Ok(Some(UpstreamGrant::Unavailable));
                }
            };
            // The version is the compare-and-set; it only moved if our lease ran out and someone
            // else stored tokens meanwhile, and then theirs stand.
            if !state.store.swap_upstream_tokens(&row.sid, row.version, &sealed, fresh.expires_at.map(|t| t as i64), now()).await? {
                tracing::warn!("upstream tokens were replaced while our refresh was in flight; keeping the stored ones");
            }
            Ok(Some(UpstreamGrant::Usable))
        }
        Ok(Err(error)) if refused_for_good(&error) => {
            tracing::warn!(%error, "the upstream authorization server refused the refresh; ending the session");
            refused(state, row, owner).await
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "upstream refresh failed for now; the session is kept");
            state.store.release_refresh_lease(&row.sid, owner).await?;
            Ok(Some(UpstreamGrant::Unavailable))
        }
        Err(_) => {
            tracing::warn!(timeout_secs = REFRESH_CALL_TIMEOUT.as_secs(), "upstream refresh timed out; the session is kept");
            state.store.release_refresh_lease(&row.sid, owner).await?;
            Ok(Some(UpstreamGrant::Unavailable))
        }
    }
}

/// The grant was refused: record it (only if we still hold the lease on the version we
/// refreshed), then end the SSO session everywhere.
async fn refused(state: &AppState, row: &UpstreamSessionRow, owner: &str) -> Result<Option<UpstreamGrant>, StoreError> {
    if !state.store.mark_upstream_refused(&row.sid, row.version, owner, now()).await? {
        return Ok(None);
    }
    super::logout::end_session(state, &row.sid).await?;
    Ok(Some(UpstreamGrant::Ended))
}

/// True when a failed refresh means the grant is over: the authorization server said so
/// (`invalid_grant`: revoked, expired, account deactivated or taken down; `access_denied`), or
/// what it answered cannot be used (the single-use refresh token is spent by then), or there is
/// no refresh token. Everything else (network, timeouts, 5xx, 429, any other 4xx, our own
/// configuration) may pass: the session is kept and a later request tries again. Exhaustive on
/// purpose, so a new error kind needs a decision here.
fn refused_for_good(error: &AtprotoError) -> bool {
    match error {
        AtprotoError::UpstreamError { status, error, .. } => {
            (400..500).contains(status) && matches!(error.as_str(), "invalid_grant" | "access_denied")
        }
        AtprotoError::InvalidResponse(_)
        | AtprotoError::ScopeNotGranted(_)
        | AtprotoError::SubjectMismatch { .. }
        | AtprotoError::InvalidInput(_) => true,
        AtprotoError::PdsUnreachable(_)
        | AtprotoError::Network(_)
        | AtprotoError::Forbidden(_)
        | AtprotoError::Crypto(_)
        | AtprotoError::Config(_)
        | AtprotoError::InvalidHandle(_)
        | AtprotoError::InvalidDid(_)
        | AtprotoError::HandleNotFound(_)
        | AtprotoError::HandleMismatch { .. }
        | AtprotoError::DidResolution(_)
        | AtprotoError::NoOAuth(_)
        | AtprotoError::HostileMetadata(_)
        | AtprotoError::StateMismatch
        | AtprotoError::IssuerMismatch { .. }
        | AtprotoError::NotAuthoritative(_)
        | AtprotoError::AccessDenied(_) => false,
    }
}
