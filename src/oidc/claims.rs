//! Scopes and the user claims each one releases.
use openidconnect::{
    core::CoreGenderClaim, EndUserEmail, EndUserName, EndUserPictureUrl, EndUserProfileUrl, EndUserUsername, StandardClaims,
    SubjectIdentifier,
};
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

/// The OIDC Core standard claims released for `scopes`: `sub` (the DID) always, the rest when a
/// scope releases them and the fact is known (absent facts stay absent).
pub fn standard_claims(scopes: &[String], user: &UserProfile) -> StandardClaims<CoreGenderClaim> {
    let mut claims = StandardClaims::new(SubjectIdentifier::new(user.did.clone()));
    if has_scope(scopes, "profile") {
        let name = user.display_name.as_ref().or(user.handle.as_ref());
        claims = claims
            .set_name(name.map(|name| EndUserName::new(name.clone()).into()))
            .set_preferred_username(user.handle.as_ref().map(|handle| EndUserUsername::new(handle.clone())))
            .set_profile(user.handle.as_ref().map(|handle| EndUserProfileUrl::new(format!("https://bsky.app/profile/{handle}")).into()))
            .set_picture(user.avatar.as_ref().map(|picture| EndUserPictureUrl::new(picture.clone()).into()));
    }
    if has_scope(scopes, "email") {
        if let Some(email) = &user.email {
            claims =
                claims.set_email(Some(EndUserEmail::new(email.clone()))).set_email_verified(Some(user.email_verified.unwrap_or(false)));
        }
    }
    claims
}

/// `standard_claims` as the JSON object an ID token's or the UserInfo response's claims start
/// from.
pub fn user_claims(scopes: &[String], user: &UserProfile) -> Result<Map<String, Value>, serde_json::Error> {
    match serde_json::to_value(standard_claims(scopes, user))? {
        Value::Object(claims) => Ok(claims),
        _ => Err(serde::ser::Error::custom("standard claims are not a JSON object")),
    }
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
        let openid_only = user_claims(&["openid".into()], &user).unwrap();
        assert_eq!(openid_only.keys().collect::<Vec<_>>(), ["sub"]);
        assert_eq!(openid_only["sub"], "did:plc:abc");
        let profile = user_claims(&["openid".into(), "profile".into()], &user).unwrap();
        assert_eq!(profile["preferred_username"], "alice.test");
        assert_eq!(profile["name"], "alice.test");
        assert_eq!(profile["picture"], "https://cdn/x");
        assert!(!profile.contains_key("email"));
        let email = user_claims(&["email".into()], &user).unwrap();
        assert_eq!(email["email_verified"], true);
    }
}
