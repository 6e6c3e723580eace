//! atsso as seen through the `openidconnect` crate: discovery, the authorization request, the
//! code exchange with ID token verification, userinfo and the end-session URL. Discovery runs
//! on first use (so the app starts even before atsso does) and is then kept.
use std::{
    sync::{PoisonError, RwLock},
    time::{Duration, Instant},
};

use openidconnect::{
    core::{
        CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType, CoreGenderClaim,
        CoreIdTokenVerifier, CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm, CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse,
        CoreTokenType,
    },
    reqwest, AccessToken, AccessTokenHash, AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EmptyExtraTokenFields, EndSessionUrl, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IdTokenFields, IdTokenVerifier, IssuerUrl, JsonWebKeySetUrl, LogoutRequest, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl,
    RequestTokenError, Scope, SignatureVerificationError, StandardErrorResponse, StandardTokenResponse,
    SubjectIdentifier, TokenResponse,
};
use serde::{Deserialize, Serialize};

use crate::{
    config::Settings,
    session::{Login, PendingLogin},
};

/// Claims the crate does not model but single logout needs: `sid` names the atsso session.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct SessionClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}
impl AdditionalClaims for SessionClaims {}

pub type IdToken =
    openidconnect::IdToken<SessionClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;
type TokenFields =
    IdTokenFields<SessionClaims, EmptyExtraTokenFields, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;
type Tokens = StandardTokenResponse<TokenFields, CoreTokenType>;
/// A client as `from_provider_metadata` builds it: authorize set, token and userinfo maybe.
type OidcClient = openidconnect::Client<
    SessionClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The ID token claims the home page shows.
#[derive(Clone, Debug)]
pub struct Claims {
    pub sub: String,
    pub preferred_username: Option<String>,
    pub name: Option<String>,
    pub picture: Option<String>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub sid: Option<String>,
    pub auth_time: Option<i64>,
    pub expires_at: i64,
}

/// Only re-fetch the JWKS for an unknown key this often (a forged `kid` must not make us
/// hammer atsso).
const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

struct KeyCache {
    keys: CoreJsonWebKeySet,
    fetched: Instant,
}

pub struct Provider {
    client: OidcClient,
    http: reqwest::Client,
    client_id: ClientId,
    issuer: IssuerUrl,
    jwks_uri: JsonWebKeySetUrl,
    keys: RwLock<KeyCache>,
    end_session: Option<EndSessionUrl>,
    post_logout_redirect_uri: String,
}

impl Provider {
    /// OIDC discovery at `settings.issuer`.
    pub async fn discover(settings: &Settings, http: reqwest::Client) -> Result<Self, String> {
        let issuer = IssuerUrl::new(settings.issuer.clone()).map_err(|e| format!("ISSUER: {e}"))?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer.clone(), &http)
            .await
            .map_err(|e| format!("OpenID Connect discovery at {} failed: {}", settings.issuer, chain(&e)))?;
        let redirect = RedirectUrl::new(settings.redirect_uri()).map_err(|e| format!("APP_URL: {e}"))?;
        let client_id = ClientId::new(settings.client_id.clone());
        let client = OidcClient::from_provider_metadata(
            metadata.clone(),
            client_id.clone(),
            settings.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect);
        Ok(Provider {
            client,
            http,
            client_id,
            issuer,
            jwks_uri: metadata.jwks_uri().clone(),
            keys: RwLock::new(KeyCache { keys: metadata.jwks().clone(), fetched: Instant::now() }),
            end_session: metadata.additional_metadata().end_session_endpoint.clone(),
            post_logout_redirect_uri: settings.post_logout_redirect_uri(),
        })
    }

    /// The URL to send the browser to, and what the callback must check.
    pub fn authorization_request(&self) -> (String, PendingLogin) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = self
            .client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .add_scope(Scope::new("profile".into()))
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge)
            .url();
        let pending = PendingLogin {
            started: Instant::now(),
            state: state.into_secret(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.into_secret(),
        };
        (url.to_string(), pending)
    }

    /// Exchanges the code (with the PKCE verifier) and verifies the ID token: signature against
    /// atsso's JWKS, iss, aud, exp, our nonce, and at_hash against the access token.
    pub async fn complete_login(&self, code: String, pending: PendingLogin) -> Result<Login, String> {
        let tokens = self
            .client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| e.to_string())?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| describe_token_error(&e))?;
        let id_token = tokens.id_token().ok_or("atsso's token response has no ID token")?.clone();
        let access_token = tokens.access_token().clone();
        let nonce = Nonce::new(pending.nonce);
        let claims = self
            .verify(|verifier| {
                let claims = id_token.claims(verifier, &nonce)?;
                check_at_hash(&id_token, verifier, claims.access_token_hash(), &access_token)?;
                Ok(display_claims(claims))
            })
            .await
            .map_err(|e| format!("the ID token did not verify: {e}"))?;
        Ok(Login { claims, id_token, access_token })
    }

    /// Calls the userinfo endpoint; returns its claims as JSON.
    pub async fn userinfo(&self, access_token: &AccessToken, sub: &str) -> Result<serde_json::Value, String> {
        let claims: openidconnect::UserInfoClaims<SessionClaims, CoreGenderClaim> = self
            .client
            .user_info(access_token.clone(), Some(SubjectIdentifier::new(sub.to_owned())))
            .map_err(|e| e.to_string())?
            .request_async(&self.http)
            .await
            .map_err(|e| format!("userinfo failed: {}", chain(&e)))?;
        serde_json::to_value(&claims).map_err(|e| e.to_string())
    }

    /// atsso's end-session URL for this login (RP-Initiated Logout), when it publishes one.
    pub fn end_session_url(&self, id_token: &IdToken, state: &str) -> Option<String> {
        let endpoint = self.end_session.clone()?;
        let back_to = PostLogoutRedirectUrl::new(self.post_logout_redirect_uri.clone()).ok()?;
        let request = LogoutRequest::from(endpoint)
            .set_id_token_hint(id_token)
            .set_post_logout_redirect_uri(back_to)
            .set_state(CsrfToken::new(state.to_owned()));
        Some(request.http_get_url().to_string())
    }

    /// A verifier for JWTs issued by atsso to this client (RS256, iss, aud = CLIENT_ID, exp).
    pub fn verifier(&self) -> CoreIdTokenVerifier<'static> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner).keys.clone();
        IdTokenVerifier::new_public_client(self.client_id.clone(), self.issuer.clone(), keys)
    }

    /// Runs `check` with a verifier; when the token was signed by a key we have not seen (atsso
    /// rotated its keys), re-fetches the JWKS once and tries again.
    pub async fn verify<T>(
        &self,
        check: impl Fn(&CoreIdTokenVerifier<'static>) -> Result<T, ClaimsVerificationError>,
    ) -> Result<T, ClaimsVerificationError> {
        match check(&self.verifier()) {
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey))
                if self.refresh_keys().await =>
            {
                check(&self.verifier())
            }
            other => other,
        }
    }

    async fn refresh_keys(&self) -> bool {
        let due = self.keys.read().unwrap_or_else(PoisonError::into_inner).fetched.elapsed() >= JWKS_REFRESH_INTERVAL;
        if !due {
            return false;
        }
        match CoreJsonWebKeySet::fetch_async(&self.jwks_uri, &self.http).await {
            Ok(keys) => {
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = KeyCache { keys, fetched: Instant::now() };
                tracing::info!("re-fetched atsso's JWKS");
                true
            }
            Err(error) => {
                tracing::warn!(error = %chain(&error), "re-fetching atsso's JWKS failed");
                false
            }
        }
    }
}

fn check_at_hash(
    id_token: &IdToken,
    verifier: &CoreIdTokenVerifier<'static>,
    expected: Option<&AccessTokenHash>,
    access_token: &AccessToken,
) -> Result<(), ClaimsVerificationError> {
    // at_hash is optional in the code flow; atsso always sends it, and when present it must match.
    let Some(expected) = expected else { return Ok(()) };
    let alg = id_token.signing_alg().map_err(ClaimsVerificationError::SignatureVerification)?;
    let key = id_token.signing_key(verifier).map_err(ClaimsVerificationError::SignatureVerification)?;
    let actual = AccessTokenHash::from_token(access_token, alg, key)
        .map_err(|e| ClaimsVerificationError::Other(format!("at_hash: {e}")))?;
    if &actual == expected {
        Ok(())
    } else {
        Err(ClaimsVerificationError::Other("at_hash does not match the access token".into()))
    }
}

fn display_claims(claims: &openidconnect::IdTokenClaims<SessionClaims, CoreGenderClaim>) -> Claims {
    Claims {
        sub: claims.subject().as_str().to_owned(),
        preferred_username: claims.preferred_username().map(|u| u.as_str().to_owned()),
        name: claims.name().and_then(|n| n.get(None)).map(|n| n.as_str().to_owned()),
        picture: claims.picture().and_then(|p| p.get(None)).map(|p| p.as_str().to_owned()),
        email: claims.email().map(|e| e.as_str().to_owned()),
        email_verified: claims.email_verified(),
        sid: claims.additional_claims().sid.clone(),
        auth_time: claims.auth_time().map(|t| t.timestamp()),
        expires_at: claims.expiration().timestamp(),
    }
}

/// A token endpoint failure, described without echoing the response body (it may hold tokens).
fn describe_token_error<RE: std::error::Error>(
    error: &RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> String {
    match error {
        RequestTokenError::ServerResponse(response) => format!("atsso refused the code: {response}"),
        RequestTokenError::Request(e) => format!("could not reach atsso's token endpoint: {}", chain(e)),
        RequestTokenError::Parse(..) => "atsso's token response could not be read".into(),
        RequestTokenError::Other(e) => e.clone(),
    }
}

/// An error with its causes ("Request failed: error sending request: connection refused").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}
