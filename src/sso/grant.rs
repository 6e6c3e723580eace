//! The stored upstream grant of an SSO session: unsealing its tokens and revoking it at the
//! user's authorization server. Below both the login/refresh flow (`upstream`) and single logout
//! (`logout`), so neither needs the other for it.
use crate::{atproto::UpstreamTokens, state::AppState, store::upstream::UpstreamSessionRow};

/// The upstream tokens of a stored grant; None when they cannot be unsealed.
pub(super) fn open_tokens(state: &AppState, row: &UpstreamSessionRow) -> Option<UpstreamTokens> {
    let json = state.sealer.open_str(&row.tokens_sealed).ok()?;
    serde_json::from_str(&json).ok()
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
