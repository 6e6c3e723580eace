//! OpenID Connect Back-Channel Logout 1.0, §2.6: validating a logout token. The signature, iss,
//! aud and exp checks are the `openidconnect` crate's ID token verifier (a logout token is a JWT
//! with the same envelope); the logout-specific rules are checked here.
use openidconnect::{
    core::{CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm},
    AdditionalClaims, ClaimsVerificationError, JsonWebTokenType, Nonce,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::provider::Provider;

pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The logout token's claims beyond the ID token's.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct LogoutClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Map<String, Value>>,
}
impl AdditionalClaims for LogoutClaims {}

type LogoutToken =
    openidconnect::IdToken<LogoutClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;

/// Whom to sign out: the atsso session and/or the user.
#[derive(Debug, PartialEq, Eq)]
pub struct LogoutTarget {
    pub sid: Option<String>,
    pub sub: Option<String>,
}

/// Verifies a logout token; the error says why it was refused (safe to log, never the token).
pub async fn verify(provider: &Provider, token: &str) -> Result<LogoutTarget, String> {
    if token.len() > 16 * 1024 {
        return Err("logout token too long".into());
    }
    let token: LogoutToken = token.parse().map_err(|_| "not a JWT".to_owned())?;
    // Explicit typing (§2.4): a logout token says `logout+jwt`, so an ID token cannot pass as one.
    let logout_type = JsonWebTokenType::new("logout+jwt".into())
        .normalize()
        .map_err(|e| format!("logout+jwt type: {e:?}"))?;
    let claims = provider
        .verify(|verifier| {
            let verifier = verifier.clone().set_allowed_jose_types([logout_type.clone()]);
            token.claims(&verifier, no_nonce).cloned()
        })
        .await
        .map_err(|e: ClaimsVerificationError| e.to_string())?;
    let extra = claims.additional_claims();
    let event = extra.events.as_ref().and_then(|events| events.get(BACKCHANNEL_EVENT));
    if !matches!(event, Some(Value::Object(_))) {
        return Err(format!("events has no {BACKCHANNEL_EVENT} member"));
    }
    let sub = Some(claims.subject().as_str().to_owned()).filter(|s| !s.is_empty());
    let sid = extra.sid.clone().filter(|s| !s.is_empty());
    if sid.is_none() && sub.is_none() {
        return Err("the token names neither sid nor sub".into());
    }
    Ok(LogoutTarget { sid, sub })
}

/// §2.4: a logout token must not contain a nonce.
fn no_nonce(nonce: Option<&Nonce>) -> Result<(), String> {
    match nonce {
        Some(_) => Err("a logout token must not contain a nonce".into()),
        None => Ok(()),
    }
}
