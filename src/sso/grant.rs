//! The stored upstream grant of an SSO session: unsealing its tokens and revoking it at the
//! user's authorization server. Below both the login/refresh flow (`upstream`) and single logout
//! (`logout`), so neither needs the other for it. A revocation is an outbox row (the user's
//! logout never waits for their PDS); `revoke_queued` is one attempt at it.
use std::time::Duration;

use crate::{
    atproto::{AtprotoError, UpstreamTokens},
    clock::now,
    state::AppState,
    store::{
        outbox::{OutboxRow, Outcome},
        upstream::UpstreamSessionRow,
        StoreError,
    },
};

/// The most one revocation may take (it makes up to two requests, with the DPoP nonce retry).
const REVOKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The upstream tokens of a stored grant; None when they cannot be unsealed.
pub(super) fn open_tokens(state: &AppState, row: &UpstreamSessionRow) -> Option<UpstreamTokens> {
    open_sealed(state, &row.tokens_sealed)
}

fn open_sealed(state: &AppState, sealed: &str) -> Option<UpstreamTokens> {
    let json = state.sealer.open_str(sealed).ok()?;
    serde_json::from_str(&json).ok()
}

/// What the admin sees as the target of a revocation: the grant's authorization server.
pub(super) fn issuer_of(state: &AppState, sealed: &str) -> String {
    open_sealed(state, sealed).map(|t| t.issuer).unwrap_or_else(|| "(unreadable grant)".into())
}

/// Queues the revocation of the grant the session holds now, which a new sign-in is replacing.
pub async fn queue_upstream_revoke(state: &AppState, sid: &str) -> Result<(), StoreError> {
    state.store.enqueue_upstream_revoke(sid, now(), &|sealed: &str| issuer_of(state, sealed)).await?;
    Ok(())
}

/// One attempt at revoking a queued upstream grant.
pub(super) async fn revoke_queued(state: &AppState, row: &OutboxRow) -> Outcome {
    let Some(tokens) = row.payload_sealed.as_deref().and_then(|sealed| open_sealed(state, sealed)) else {
        return Outcome::Failed("the upstream tokens cannot be unsealed".into());
    };
    match tokio::time::timeout(REVOKE_TIMEOUT, state.atproto.revoke(&tokens)).await {
        Ok(Ok(())) => Outcome::Delivered,
        Ok(Err(error)) => revoke_error_outcome(&error),
        Err(_) => Outcome::Retry("timed out".into()),
    }
}

/// A 4xx from the authorization server means the grant is gone already (or will never be
/// revocable by us): done. Trouble that may pass is retried; our own problems fail.
fn revoke_error_outcome(error: &AtprotoError) -> Outcome {
    match error {
        AtprotoError::UpstreamError { status, .. } if *status == 408 || *status == 429 || *status >= 500 => {
            Outcome::Retry(format!("HTTP {status}"))
        }
        AtprotoError::UpstreamError { .. } => Outcome::Delivered,
        AtprotoError::PdsUnreachable(_) | AtprotoError::Network(_) => Outcome::Retry("unreachable".into()),
        AtprotoError::Forbidden(reason) => Outcome::Failed(format!("refused: {reason}")),
        _ => Outcome::Failed("the revocation could not be sent".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_by_the_authorization_server_means_the_grant_is_gone() {
        let upstream = |status| AtprotoError::UpstreamError { status, error: "x".into(), description: None };
        assert_eq!(revoke_error_outcome(&upstream(400)), Outcome::Delivered);
        assert_eq!(revoke_error_outcome(&upstream(401)), Outcome::Delivered);
        assert_eq!(revoke_error_outcome(&upstream(503)), Outcome::Retry("HTTP 503".into()));
        assert_eq!(revoke_error_outcome(&upstream(429)), Outcome::Retry("HTTP 429".into()));
        assert_eq!(revoke_error_outcome(&AtprotoError::PdsUnreachable("x".into())), Outcome::Retry("unreachable".into()));
        assert!(matches!(revoke_error_outcome(&AtprotoError::Forbidden("private".into())), Outcome::Failed(_)));
    }
}
