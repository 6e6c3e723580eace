//! OpenID Provider metadata (OpenID Connect Discovery 1.0, RFC 8414), typed with the
//! `openidconnect` crate's `ProviderMetadata` (the same type our relying parties parse it with).
//! What Discovery 1.0 does not define comes in through the crate's extension points:
//! `end_session_endpoint` through its `LogoutProviderMetadata` (RP-Initiated Logout 1.0), the rest
//! (RFC 7009 / RFC 7662 endpoints, PKCE, RFC 9207, Back- and Front-Channel Logout) through our own
//! `AdditionalProviderMetadata`.
use openidconnect::{
    core::{
        CoreAuthDisplay, CoreAuthPrompt, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey,
        CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
        CoreSubjectIdentifierType,
    },
    AdditionalProviderMetadata, AuthUrl, EndSessionUrl, IntrospectionUrl, IssuerUrl, JsonWebKeySetUrl, LanguageTag, LogoutProviderMetadata,
    PkceCodeChallengeMethod, ProviderMetadata, RegistrationUrl, ResponseTypes, RevocationUrl, Scope, TokenUrl, UserInfoUrl,
};
use serde::{Deserialize, Serialize};

use super::claims::{SUPPORTED_CLAIMS, SUPPORTED_SCOPES};
use crate::config::{Config, ConfigError};

/// Metadata beyond Discovery 1.0 and RP-Initiated Logout.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct Extensions {
    revocation_endpoint: RevocationUrl,
    introspection_endpoint: IntrospectionUrl,
    code_challenge_methods_supported: Vec<PkceCodeChallengeMethod>,
    revocation_endpoint_auth_methods_supported: Vec<CoreClientAuthMethod>,
    introspection_endpoint_auth_methods_supported: Vec<CoreClientAuthMethod>,
    /// `CoreAuthPrompt` has no serde implementation: its names, as strings.
    prompt_values_supported: Vec<String>,
    authorization_response_iss_parameter_supported: bool,
    backchannel_logout_supported: bool,
    backchannel_logout_session_supported: bool,
    frontchannel_logout_supported: bool,
    frontchannel_logout_session_supported: bool,
    /// Our extension: scopes with this prefix ask for atproto permissions in the user's account
    /// (`atproto:repo:com.example.post?action=create`), used through the XRPC proxy below.
    atproto_scope_prefix: String,
    /// Our extension: where tenant apps call XRPC methods (`{endpoint}/{nsid}`) with their
    /// access token; atsso calls the user's PDS on their behalf.
    atproto_xrpc_endpoint: String,
}

impl AdditionalProviderMetadata for Extensions {}

type Metadata = ProviderMetadata<
    LogoutProviderMetadata<Extensions>,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The discovery document, rendered once at start. Fails only on a public URL that does not make
/// valid endpoint URLs.
pub fn document(config: &Config) -> Result<String, ConfigError> {
    let url = |path: &str| config.endpoint(path);
    let invalid = |e: openidconnect::url::ParseError| ConfigError { setting: "ATSSO_PUBLIC_URL", problem: e.to_string() };
    let client_auth = || vec![CoreClientAuthMethod::ClientSecretBasic, CoreClientAuthMethod::ClientSecretPost, CoreClientAuthMethod::None];
    let extensions = Extensions {
        revocation_endpoint: RevocationUrl::new(url("/oauth2/revoke")).map_err(invalid)?,
        introspection_endpoint: IntrospectionUrl::new(url("/oauth2/introspect")).map_err(invalid)?,
        code_challenge_methods_supported: vec![PkceCodeChallengeMethod::new("S256".into())],
        revocation_endpoint_auth_methods_supported: client_auth(),
        introspection_endpoint_auth_methods_supported: client_auth(),
        prompt_values_supported: [CoreAuthPrompt::None, CoreAuthPrompt::Login, CoreAuthPrompt::Consent]
            .iter()
            .map(|prompt| prompt.as_ref().to_owned())
            .collect(),
        authorization_response_iss_parameter_supported: true,
        backchannel_logout_supported: true,
        backchannel_logout_session_supported: true,
        frontchannel_logout_supported: true,
        frontchannel_logout_session_supported: true,
        atproto_scope_prefix: crate::atproto::permission::TENANT_SCOPE_PREFIX.to_owned(),
        atproto_xrpc_endpoint: url("/xrpc"),
    };
    let logout = LogoutProviderMetadata {
        end_session_endpoint: Some(EndSessionUrl::new(url("/oauth2/end_session")).map_err(invalid)?),
        additional_metadata: extensions,
    };
    let registration_endpoint = match config.dynamic_registration {
        true => Some(RegistrationUrl::new(url("/oauth2/register")).map_err(invalid)?),
        false => None,
    };
    let metadata = Metadata::new(
        IssuerUrl::new(config.issuer()).map_err(invalid)?,
        AuthUrl::new(url("/oauth2/authorize")).map_err(invalid)?,
        JsonWebKeySetUrl::new(url("/.well-known/jwks.json")).map_err(invalid)?,
        vec![ResponseTypes::new(vec![CoreResponseType::Code])],
        vec![CoreSubjectIdentifierType::Public],
        vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256],
        logout,
    )
    .set_token_endpoint(Some(TokenUrl::new(url("/oauth2/token")).map_err(invalid)?))
    .set_userinfo_endpoint(Some(UserInfoUrl::new(url("/oauth2/userinfo")).map_err(invalid)?))
    .set_registration_endpoint(registration_endpoint)
    .set_scopes_supported(Some(SUPPORTED_SCOPES.iter().map(|s| Scope::new((*s).to_owned())).collect()))
    .set_claims_supported(Some(SUPPORTED_CLAIMS.iter().map(|c| CoreClaimName::new((*c).to_owned())).collect()))
    .set_response_modes_supported(Some(vec![CoreResponseMode::Query]))
    .set_grant_types_supported(Some(vec![CoreGrantType::AuthorizationCode, CoreGrantType::RefreshToken]))
    .set_userinfo_signing_alg_values_supported(Some(vec![CoreJwsSigningAlgorithm::None]))
    .set_token_endpoint_auth_methods_supported(Some(client_auth()))
    .set_claim_types_supported(Some(vec![CoreClaimType::Normal]))
    .set_claims_parameter_supported(Some(false))
    .set_request_parameter_supported(Some(false))
    .set_request_uri_parameter_supported(Some(false))
    .set_ui_locales_supported(Some(vec![LanguageTag::new("en".into())]));
    serde_json::to_string(&metadata).map_err(|e| ConfigError { setting: "ATSSO_PUBLIC_URL", problem: e.to_string() })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn document(public_url: &str, dynamic_registration: bool) -> serde_json::Map<String, Value> {
        let mut config =
            crate::config::Config::from_sources(Default::default(), |name| (name == "ATSSO_PUBLIC_URL").then(|| public_url.to_owned()))
                .unwrap();
        config.dynamic_registration = dynamic_registration;
        let text = super::document(&config).unwrap();
        // What a relying party parses it with.
        serde_json::from_str::<openidconnect::ProviderMetadataWithLogout>(&text).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// Every field the hand-built document had, with the same values.
    #[test]
    fn publishes_every_field_it_always_did() {
        let doc = document("https://sso.example/base/", false);
        let mut keys: Vec<&str> = doc.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "atproto_scope_prefix",
                "atproto_xrpc_endpoint",
                "authorization_endpoint",
                "authorization_response_iss_parameter_supported",
                "backchannel_logout_session_supported",
                "backchannel_logout_supported",
                "claim_types_supported",
                "claims_parameter_supported",
                "claims_supported",
                "code_challenge_methods_supported",
                "end_session_endpoint",
                "frontchannel_logout_session_supported",
                "frontchannel_logout_supported",
                "grant_types_supported",
                "id_token_signing_alg_values_supported",
                "introspection_endpoint",
                "introspection_endpoint_auth_methods_supported",
                "issuer",
                "jwks_uri",
                "prompt_values_supported",
                "request_parameter_supported",
                "request_uri_parameter_supported",
                "response_modes_supported",
                "response_types_supported",
                "revocation_endpoint",
                "revocation_endpoint_auth_methods_supported",
                "scopes_supported",
                "subject_types_supported",
                "token_endpoint",
                "token_endpoint_auth_methods_supported",
                "ui_locales_supported",
                "userinfo_endpoint",
                "userinfo_signing_alg_values_supported",
            ]
        );
        assert_eq!(doc["issuer"], "https://sso.example/base");
        assert_eq!(doc["end_session_endpoint"], "https://sso.example/base/oauth2/end_session");
        assert_eq!(doc["revocation_endpoint"], "https://sso.example/base/oauth2/revoke");
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(doc["userinfo_signing_alg_values_supported"], serde_json::json!(["none"]));
        assert_eq!(doc["prompt_values_supported"], serde_json::json!(["none", "login", "consent"]));
        assert_eq!(
            doc["introspection_endpoint_auth_methods_supported"],
            serde_json::json!(["client_secret_basic", "client_secret_post", "none"])
        );
        assert_eq!(doc["claims_parameter_supported"], false);
        assert_eq!(doc["backchannel_logout_supported"], true);
        assert_eq!(doc["ui_locales_supported"], serde_json::json!(["en"]));

        let with_registration = document("http://127.0.0.1:8080", true);
        assert_eq!(with_registration.len(), doc.len() + 1);
        assert_eq!(with_registration["registration_endpoint"], "http://127.0.0.1:8080/oauth2/register");
    }
}
