//! The sign-in and sign-out flows, free of HTTP details: the route handlers pass in the session
//! id from the cookie and what the request carried, and turn the outcome into a response.
use serde::Deserialize;

use crate::{error::AppError, logout_token, session::LOGIN_TTL, state::AppState};

/// `/login`: a fresh session holding the PKCE verifier, state and nonce; the URL at atsso.
pub async fn begin_login(state: &AppState, old_session: Option<&str>) -> Result<(String, String), AppError> {
    let provider = state.provider().await?;
    let (url, pending) = provider.authorization_request();
    if let Some(old) = old_session {
        state.sessions.remove(old);
    }
    let session_id = state.sessions.create(|s| s.pending = Some(pending));
    Ok((url, session_id))
}

/// What atsso sends back to `/callback`.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// `/callback`: checks state (and `iss`), exchanges the code, verifies the ID token and signs
/// the person in under a new session id. Returns that id.
pub async fn finish_login(state: &AppState, session_id: Option<&str>, params: CallbackParams) -> Result<String, AppError> {
    let pending = session_id
        .and_then(|id| state.sessions.remove(id))
        .and_then(|session| session.pending)
        .ok_or_else(|| AppError::bad_request("No sign-in in progress", "This sign-in link was already used or belongs to another browser. Start again."))?;
    if params.state.as_deref() != Some(pending.state.as_str()) {
        return Err(AppError::bad_request("Sign-in refused", "The state parameter does not match this browser's sign-in."));
    }
    if let Some(error) = params.error {
        let description = params.error_description.map(|d| format!(": {d}")).unwrap_or_default();
        return Err(AppError::bad_request("atsso did not sign you in", format!("{error}{description}")));
    }
    if pending.started.elapsed() > LOGIN_TTL {
        return Err(AppError::bad_request("Sign-in expired", "The sign-in took too long. Start again."));
    }
    // RFC 9207: atsso names itself in the redirect; a different issuer means a mix-up.
    if params.iss.as_deref().is_some_and(|iss| iss != state.settings.issuer) {
        return Err(AppError::bad_request("Sign-in refused", "The response came from a different issuer."));
    }
    let code = params.code.ok_or_else(|| AppError::bad_request("Sign-in refused", "atsso sent no authorization code."))?;
    let provider = state.provider().await?;
    let login = provider.complete_login(code, pending).await.map_err(|detail| {
        tracing::warn!(%detail, "sign-in failed");
        AppError::bad_request("Sign-in failed", detail)
    })?;
    tracing::info!(sub = %login.claims.sub, "signed in");
    Ok(state.sessions.create(|s| s.login = Some(login)))
}

/// `/logout`: forgets the local session and returns where to send the browser (atsso's
/// end-session endpoint, which signs the person out of every app) and the new session id that
/// remembers the logout `state`. `None`: nothing to do at atsso.
pub async fn begin_logout(state: &AppState, session_id: Option<&str>) -> Result<Option<(String, String)>, AppError> {
    let Some(login) = session_id.and_then(|id| state.sessions.remove(id)).and_then(|s| s.login) else {
        return Ok(None);
    };
    tracing::info!(sub = %login.claims.sub, "signed out locally; going to atsso's end-session endpoint");
    let provider = state.provider().await?;
    let logout_state = openidconnect::CsrfToken::new_random().into_secret();
    let Some(url) = provider.end_session_url(&login.id_token, &logout_state) else {
        return Ok(None);
    };
    let session_id = state.sessions.create(|s| s.logout_state = Some(logout_state));
    Ok(Some((url, session_id)))
}

/// Why a back-channel logout was not done.
pub enum BackchannelError {
    /// The token is not a valid logout token for us (answer 400).
    BadToken(String),
    /// atsso's keys could not be loaded (answer 503, so atsso retries).
    Unavailable,
}

/// `/backchannel-logout`: verifies the logout token and ends every local session of that atsso
/// session. Returns how many ended.
pub async fn backchannel_logout(state: &AppState, token: &str) -> Result<usize, BackchannelError> {
    let provider = state.provider().await.map_err(|_| BackchannelError::Unavailable)?;
    let target = logout_token::verify(provider, token).await.map_err(BackchannelError::BadToken)?;
    let ended = state.sessions.remove_signed_in(target.sid.as_deref(), target.sub.as_deref());
    tracing::info!(sid = ?target.sid, sub = ?target.sub, ended, "back-channel logout");
    Ok(ended)
}
