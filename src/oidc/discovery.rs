//! OpenID Provider metadata (OpenID Connect Discovery 1.0, RFC 8414).
use serde_json::json;

use super::claims::{SUPPORTED_CLAIMS, SUPPORTED_SCOPES};
use crate::config::Config;

pub fn document(config: &Config) -> String {
    let mut document = json!({
        "issuer": config.issuer(),
        "authorization_endpoint": config.endpoint("/oauth2/authorize"),
        "token_endpoint": config.endpoint("/oauth2/token"),
        "userinfo_endpoint": config.endpoint("/oauth2/userinfo"),
        "jwks_uri": config.endpoint("/.well-known/jwks.json"),
        "revocation_endpoint": config.endpoint("/oauth2/revoke"),
        "introspection_endpoint": config.endpoint("/oauth2/introspect"),
        "end_session_endpoint": config.endpoint("/oauth2/end_session"),
        "scopes_supported": SUPPORTED_SCOPES,
        "claims_supported": SUPPORTED_CLAIMS,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "userinfo_signing_alg_values_supported": ["none"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "prompt_values_supported": ["none", "login", "consent"],
        "claim_types_supported": ["normal"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "frontchannel_logout_supported": true,
        "frontchannel_logout_session_supported": true,
        "ui_locales_supported": ["en"],
    });
    if config.dynamic_registration {
        document["registration_endpoint"] = json!(config.endpoint("/oauth2/register"));
    }
    document.to_string()
}
