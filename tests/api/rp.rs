//! A relying party built with the `openidconnect` crate, as tenant apps would use it.
use openidconnect::{
    core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata, CoreTokenResponse, CoreUserInfoClaims},
    AccessToken, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IntrospectionUrl,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RevocationUrl, Scope,
    TokenResponse,
};

use super::helpers::{location, query_param, Browser, RegisteredClient, TestApp};

pub type RpClient = CoreClient<EndpointSet, EndpointNotSet, EndpointSet, EndpointSet, EndpointMaybeSet, EndpointMaybeSet>;

pub struct Rp {
    pub client: RpClient,
    pub http: reqwest::Client,
    pub redirect_uri: String,
}

/// One started authorization: what the RP remembers between redirect and callback.
pub struct Pending {
    pub url: String,
    pub state: CsrfToken,
    pub nonce: Nonce,
    pub verifier: PkceCodeVerifier,
}

impl Rp {
    pub async fn discover(app: &TestApp, registered: &RegisteredClient) -> Self {
        let http = super::helpers::rp_http();
        let metadata =
            CoreProviderMetadata::discover_async(IssuerUrl::new(app.base.clone()).unwrap(), &http).await.expect("discovery must succeed");
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(registered.client.client_id.clone()),
            registered.secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(RedirectUrl::new(registered.redirect_uri.clone()).unwrap())
        .set_revocation_url(RevocationUrl::new(app.url("/oauth2/revoke")).unwrap())
        .set_introspection_url(IntrospectionUrl::new(app.url("/oauth2/introspect")).unwrap());
        Self { client, http, redirect_uri: registered.redirect_uri.clone() }
    }

    pub fn start(&self, scopes: &[&str]) -> Pending {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self
            .client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .set_pkce_challenge(challenge);
        for scope in scopes {
            request = request.add_scope(Scope::new((*scope).into()));
        }
        let (url, state, nonce) = request.url();
        Pending { url: url.to_string(), state, nonce, verifier }
    }

    /// Follows the authorization through consent (approving when asked) and returns the code.
    pub async fn authorize(&self, app: &TestApp, browser: &Browser, pending: &Pending) -> String {
        let response = browser.get(&pending.url).await;
        assert_eq!(response.status(), 302, "authorize must redirect");
        let mut next = location(&response);
        if next.starts_with("/consent") {
            let page = browser.get(&app.url(&next)).await;
            assert_eq!(page.status(), 200);
            let html = page.text().await.unwrap();
            let request_id = super::helpers::hidden_input(&html, "request_id").expect("request_id on consent page");
            let csrf = super::helpers::hidden_input(&html, "csrf_token").expect("csrf on consent page");
            let response =
                browser.post_form(&app.url("/consent"), &[("request_id", &request_id), ("csrf_token", &csrf), ("decision", "allow")]).await;
            assert_eq!(response.status(), 302);
            next = location(&response);
        }
        assert!(next.starts_with(&self.redirect_uri), "expected a redirect to the client, got {next}");
        assert_eq!(query_param(&next, "state").as_deref(), Some(pending.state.secret().as_str()));
        assert_eq!(query_param(&next, "iss").as_deref(), Some(app.base.as_str()), "RFC 9207 iss");
        query_param(&next, "code").expect("code in redirect")
    }

    pub async fn exchange(&self, code: &str, verifier: PkceCodeVerifier) -> Result<CoreTokenResponse, String> {
        self.client
            .exchange_code(AuthorizationCode::new(code.into()))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| format!("{e:?}"))
    }

    pub async fn refresh(&self, token: &RefreshToken) -> Result<CoreTokenResponse, String> {
        self.client.exchange_refresh_token(token).unwrap().request_async(&self.http).await.map_err(|e| format!("{e:?}"))
    }

    pub async fn userinfo(&self, token: &AccessToken) -> Result<CoreUserInfoClaims, String> {
        self.client.user_info(token.clone(), None).unwrap().request_async(&self.http).await.map_err(|e| format!("{e:?}"))
    }

    /// Verifies the ID token (signature against JWKS, iss, aud, exp, nonce, at_hash) and
    /// returns its claims as JSON for inspection.
    pub fn verify_id_token(&self, response: &CoreTokenResponse, nonce: Option<&Nonce>) -> serde_json::Value {
        let id_token = response.id_token().expect("token response must carry an id_token");
        let verifier = self.client.id_token_verifier();
        let claims = match nonce {
            Some(nonce) => id_token.claims(&verifier, nonce).expect("ID token must verify").clone(),
            None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())).expect("ID token must verify").clone(),
        };
        let expected = claims.access_token_hash().expect("at_hash");
        let actual = openidconnect::AccessTokenHash::from_token(
            response.access_token(),
            id_token.signing_alg().unwrap(),
            id_token.signing_key(&verifier).unwrap(),
        )
        .unwrap();
        assert_eq!(expected, &actual, "at_hash must match the access token");
        // The crate's claim types drop claims it does not model (sid): read them from the
        // payload, now that the signature is verified.
        let payload = id_token.to_string().split('.').nth(1).unwrap().to_owned();
        let raw: serde_json::Value =
            serde_json::from_slice(&base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap()).unwrap();
        let mut merged = serde_json::to_value(&claims).unwrap();
        for (key, value) in raw.as_object().unwrap() {
            merged.as_object_mut().unwrap().entry(key.clone()).or_insert(value.clone());
        }
        merged
    }
}
