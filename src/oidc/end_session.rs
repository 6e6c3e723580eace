//! RP-Initiated Logout 1.0: validating an end-session request. Where to redirect afterwards is
//! only ever a URI registered for the client; an unverifiable request gets a page.
use serde::{Deserialize, Serialize};
use serde_json::Value;

use serde_json::Map;

use super::params::Params;
use crate::{clock::now, state::AppState, store::StoreError};

/// A validated logout request. Sealed into the confirmation form when the user must confirm.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LogoutRequest {
    pub client_id: Option<String>,
    pub client_name: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
    /// The session named by a valid `id_token_hint`.
    pub hint_sid: Option<String>,
    /// Unix time after which a sealed confirmation form is refused.
    pub expires_at: i64,
}

/// How long the user has to confirm a logout.
const CONFIRMATION_TTL_SECS: i64 = 900;

/// Why an end-session request is refused (told to the person; nobody is redirected).
#[derive(Debug, thiserror::Error)]
pub enum EndSessionError {
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn refused(message: &str) -> EndSessionError {
    EndSessionError::Refused(message.to_owned())
}

pub async fn validate(state: &AppState, params: &Params) -> Result<LogoutRequest, EndSessionError> {
    let mut request = LogoutRequest { expires_at: now() + CONFIRMATION_TTL_SECS, ..Default::default() };
    let mut client_id = params.get("client_id").map(String::from);
    if let Some(hint) = params.get("id_token_hint") {
        let claims = read_id_token_hint(state, hint)
            .ok_or_else(|| refused("The app sent an ID token that was not issued by this sign-in service."))?;
        let audience = match claims.get("aud") {
            Some(Value::String(aud)) => Some(aud.clone()),
            Some(Value::Array(values)) if values.len() == 1 => values[0].as_str().map(String::from),
            _ => None,
        };
        let audience = audience.ok_or_else(|| refused("The ID token has no single audience."))?;
        if client_id.as_deref().is_some_and(|id| id != audience) {
            return Err(refused("The app's client_id does not match the ID token."));
        }
        client_id = Some(audience);
        request.hint_sid = claims.get("sid").and_then(Value::as_str).map(String::from);
    }
    if let Some(id) = client_id.as_deref() {
        let client = state
            .store
            .client(id)
            .await?
            .ok_or_else(|| refused("The app that sent you here is not registered with this sign-in service."))?;
        request.client_name = Some(client.name.clone());
        if let Some(uri) = params.get("post_logout_redirect_uri") {
            if !client.post_logout_redirect_uris.iter().any(|registered| registered == uri) {
                return Err(refused(
                    "The app asked to send you to an address it has not registered. For your safety you were not redirected.",
                ));
            }
            request.post_logout_redirect_uri = Some(uri.to_owned());
        }
        request.client_id = Some(client.client_id);
    } else if params.contains("post_logout_redirect_uri") {
        return Err(refused("The app did not identify itself, so we cannot send you back to it."));
    }
    request.state = params.get("state").map(String::from);
    Ok(request)
}

impl LogoutRequest {
    /// Where the browser goes after logging out, if anywhere.
    pub fn redirect(&self) -> Option<String> {
        let uri = self.post_logout_redirect_uri.as_deref()?;
        let mut url = url::Url::parse(uri).ok()?;
        if let Some(state) = &self.state {
            url.query_pairs_mut().append_pair("state", state);
        }
        Some(url.to_string())
    }

    pub fn seal(&self, state: &AppState) -> Option<String> {
        state.sealer.seal_str(&serde_json::to_string(self).ok()?).ok()
    }

    pub fn unseal(state: &AppState, sealed: &str) -> Option<Self> {
        let request: Self = serde_json::from_str(&state.sealer.open_str(sealed).ok()?).ok()?;
        (request.expires_at > now()).then_some(request)
    }
}

/// Reads an `id_token_hint`: one of our ID tokens — signed by one of our keys, header `typ`
/// `JWT` (access tokens are `at+jwt`, logout tokens `logout+jwt`: neither is a hint), issued by
/// us, with an audience. Expiry is ignored (RP-Initiated Logout §2: an expired hint is fine).
/// Returns its claims; the caller checks that the audience is a registered client.
pub fn read_id_token_hint(state: &AppState, hint: &str) -> Option<Map<String, Value>> {
    if hint.len() > 8192 {
        return None;
    }
    let claims = state.keys.current().verify(hint, Some("JWT")).ok()?;
    let ours = claims.get("iss").and_then(Value::as_str) == Some(state.config.issuer().as_str());
    let id_token_shaped = claims.contains_key("aud") && !claims.contains_key("events") && !claims.contains_key("scope");
    (ours && id_token_shaped).then_some(claims)
}
