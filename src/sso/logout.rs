//! Single logout: ending an SSO session ends it everywhere — every token of every client issued
//! under it, a back-channel logout token to each client that asked for one, and the upstream
//! ATProto grant at the user's PDS. What others must be told is queued in the same transaction
//! that ends the session (the outbox), so a crash cannot end a session without its
//! notifications, and the user never waits for an app or for their PDS.
use crate::{
    clock::now,
    sso::{backchannel, grant},
    state::AppState,
    store::{clients::Client, StoreError},
};

/// What the logged-out page needs.
#[derive(Default)]
pub struct EndedSession {
    pub frontchannel_urls: Vec<String>,
}

/// Ends the session `sid`. Idempotent: an already ended session yields nothing new.
pub async fn end_session(state: &AppState, sid: &str) -> Result<EndedSession, StoreError> {
    let now = now();
    let Some(session) = state.store.live_session(sid, now).await? else {
        // Already ended or expired: make sure nothing of it survives, but notify nobody twice.
        state.store.revoke_session_tokens(sid, now).await?;
        return Ok(EndedSession::default());
    };
    let issuer_of = |sealed: &str| grant::issuer_of(state, sealed);
    let Some(queued) = state.store.end_session_with_outbox(sid, &session.did, now, &issuer_of).await? else {
        return Ok(EndedSession::default()); // a concurrent logout won the race
    };
    crate::audit::logout(&state.store, &session.did, sid).await;
    let mut clients: Vec<Client> = Vec::new();
    for client_id in state.store.session_client_ids(sid).await? {
        if let Some(client) = state.store.client(&client_id).await? {
            clients.push(client);
        }
    }
    let frontchannel_urls = backchannel::frontchannel_urls(state, &clients, sid);
    tracing::info!(clients = clients.len(), queued = queued.len(), "SSO session ended");
    Ok(EndedSession { frontchannel_urls })
}

/// Ends every live session of a user (admin action).
pub async fn end_all_sessions(state: &AppState, did: &str) -> Result<usize, StoreError> {
    let sids = state.store.live_session_ids_for_did(did, now()).await?;
    for sid in &sids {
        end_session(state, sid).await?;
    }
    Ok(sids.len())
}
