//! Scopes and the user claims each one releases.
use serde_json::{Map, Value};

use crate::store::users::UserProfile;

pub const SUPPORTED_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];
pub const SUPPORTED_CLAIMS: &[&str] = &[
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "sid",
    "azp",
    "at_hash",
    "name",
    "preferred_username",
    "picture",
    "profile",
    "email",
    "email_verified",
];

pub fn has_scope(scopes: &[String], scope: &str) -> bool {
    scopes.iter().any(|s| s == scope)
}

/// The user claims released for `scopes` (besides `sub`). Absent facts stay absent.
pub fn user_claims(scopes: &[String], user: &UserProfile) -> Map<String, Value> {
    let mut claims = Map::new();
    if has_scope(scopes, "profile") {
        if let Some(name) = user.display_name.as_ref().or(user.handle.as_ref()) {
            claims.insert("name".into(), name.clone().into());
        }
        if let Some(handle) = &user.handle {
            claims.insert("preferred_username".into(), handle.clone().into());
            claims.insert("profile".into(), format!("https://bsky.app/profile/{handle}").into());
        }
        if let Some(picture) = &user.avatar {
            claims.insert("picture".into(), picture.clone().into());
        }
    }
    if has_scope(scopes, "email") {
        if let Some(email) = &user.email {
            claims.insert("email".into(), email.clone().into());
            claims.insert("email_verified".into(), user.email_verified.unwrap_or(false).into());
        }
    }
    claims
}

/// Plain-words descriptions of what a client receives, for the consent page.
pub fn consent_descriptions(scopes: &[String], user: &UserProfile) -> Vec<String> {
    let mut lines = vec![format!("Your account identifier ({})", user.did)];
    if has_scope(scopes, "profile") {
        match &user.handle {
            Some(handle) => lines.push(format!("Your handle (@{handle}), display name and avatar")),
            None => lines.push("Your handle, display name and avatar".into()),
        }
    }
    if has_scope(scopes, "email") {
        lines.push("Your email address, if your provider shares it".into());
    }
    if has_scope(scopes, "offline_access") {
        lines.push("Access while you are not using the app".into());
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_follow_scopes() {
        let user = UserProfile {
            did: "did:plc:abc".into(),
            handle: Some("alice.test".into()),
            display_name: None,
            avatar: Some("https://cdn/x".into()),
            email: Some("a@b.c".into()),
            email_verified: Some(true),
        };
        let openid_only = user_claims(&["openid".into()], &user);
        assert!(openid_only.is_empty());
        let profile = user_claims(&["openid".into(), "profile".into()], &user);
        assert_eq!(profile["preferred_username"], "alice.test");
        assert_eq!(profile["name"], "alice.test");
        assert_eq!(profile["picture"], "https://cdn/x");
        assert!(!profile.contains_key("email"));
        let email = user_claims(&["email".into()], &user);
        assert_eq!(email["email_verified"], true);
    }
}
