//! UserInfo endpoint (OIDC Core §5.3).
use serde_json::{Map, Value};

use super::{access::validate_access_token, claims::user_claims};
use crate::{
    error::{BearerError, ErrorCode},
    state::AppState,
    store::users::UserProfile,
};

pub async fn userinfo(state: &AppState, token: &str) -> Result<Map<String, Value>, BearerError> {
    let Some(record) = validate_access_token(state, token).await? else {
        return Err(BearerError::invalid_token("the access token is invalid, expired or revoked"));
    };
    let scopes: Vec<String> = record.scope.split(' ').map(String::from).collect();
    if !scopes.iter().any(|s| s == "openid") {
        return Err(BearerError { code: ErrorCode::InsufficientScope, description: "the token lacks the openid scope".into() });
    }
    let user = state.store.user(&record.did).await?.unwrap_or_else(|| UserProfile { did: record.did.clone(), ..Default::default() });
    user_claims(&scopes, &user).map_err(|e| BearerError::server_error(&e))
}
