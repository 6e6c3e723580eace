//! Starting a login: resolve what the user typed, push the authorization request (PAR, PKCE,
//! DPoP) and say where to send the browser.

use crate::atproto::http::Endpoint;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{unix_now, AtprotoClient};
use crate::atproto::dpop::DpopKey;
use crate::atproto::dpop_http::FormFields;
use crate::atproto::error::AtprotoError;
use crate::atproto::metadata::{AuthServerInfo, ServerKind};
use crate::atproto::syntax::{normalize_handle, validate_did};
use crate::atproto::urls::origin_string;
use crate::crypto::{random_token, sha256_b64};

/// What the caller stores (sealed, keyed by `state`, single-use) between `start_login` and
/// the callback.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingLogin {
    pub state: String,
    /// Where to send the user's browser.
    pub authorization_url: String,
    pub issuer: String,
    /// Secret.
    pub pkce_verifier: String,
    /// Private JWK JSON of this login's DPoP key. Secret.
    pub dpop_private_jwk: String,
    /// Known when the login started from a handle or DID.
    pub expected_did: Option<String>,
    pub handle: Option<String>,
    pub pds_url: Option<String>,
    pub as_metadata: AuthServerInfo,
    pub redirect_uri: String,
    pub scope: String,
    /// The `client_id` this login used (see [`AtprotoClient::client_id_for`]); absent in logins
    /// stored before it was recorded, which used the configured scope's.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Unix seconds.
    pub created_at: u64,
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin")
            .field("issuer", &self.issuer)
            .field("expected_did", &self.expected_did)
            .field("handle", &self.handle)
            .field("pds_url", &self.pds_url)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl AtprotoClient {
    /// Resolve the input (handle, DID, or PDS / entryway URL), push the authorization request
    /// (for the configured scope plus `permissions`, canonical atproto permissions) and return
    /// what to store plus where to send the browser.
    #[tracing::instrument(skip_all)]
    pub async fn start_login(&self, input: &str, permissions: &[String]) -> Result<PendingLogin, AtprotoError> {
        let input = input.trim();
        let (expected_did, handle, pds_url, as_info) = if input.starts_with("https://") || input.starts_with("http://") {
            let url = Url::parse(input).map_err(|_| AtprotoError::InvalidInput("not a valid URL".into()))?;
            self.http.check_url(&url).map_err(|e| e.into_error(AtprotoError::InvalidInput))?;
            match self.metadata.for_server_url(&url).await? {
                ServerKind::AuthServer(info) => (None, None, None, info),
                ServerKind::Pds { pds_url, auth_server } => (None, None, Some(pds_url), auth_server),
            }
        } else if input.starts_with("did:") {
            validate_did(input)?;
            let id = self.resolver.resolve_from_did(input).await?;
            let info = self.metadata.for_pds(&id.pds_url).await?;
            (Some(id.did), id.handle, Some(id.pds_url), info)
        } else {
            let handle = normalize_handle(input)?;
            let id = self.resolver.resolve_from_handle(&handle).await?;
            let info = self.metadata.for_pds(&id.pds_url).await?;
            (Some(id.did), id.handle, Some(id.pds_url), info)
        };

        let pkce_verifier = random_token(32);
        let code_challenge = sha256_b64(&pkce_verifier);
        let state = random_token(24);
        let dpop = DpopKey::generate()?;
        let redirect_uri = self.redirect_uri();
        let scope = self.scope_with(permissions);
        let client_id = self.client_id_for(&scope);
        let login_hint = handle.clone().or_else(|| expected_did.clone());

        let par_url = Url::parse(&as_info.pushed_authorization_request_endpoint)
            .map_err(|_| AtprotoError::HostileMetadata("bad PAR endpoint".into()))?;
        let issuer = as_info.issuer.clone();
        let build = || -> Result<FormFields, AtprotoError> {
            let mut form = self.client_auth(&issuer, &client_id)?;
            form.extend([
                ("response_type", "code".to_string()),
                ("code_challenge", code_challenge.clone()),
                ("code_challenge_method", "S256".to_string()),
                ("state", state.clone()),
                ("redirect_uri", redirect_uri.clone()),
                ("scope", scope.clone()),
            ]);
            if let Some(h) = &login_hint {
                form.push(("login_hint", h.clone()));
            }
            Ok(form)
        };
        let resp = self.dpop_http.request(Endpoint::Par, &dpop, &par_url, None, Some(&build), AtprotoError::PdsUnreachable).await?;
        if !resp.is_success() {
            return Err(resp.upstream_error());
        }
        #[derive(Deserialize)]
        struct ParResponse {
            request_uri: String,
        }
        let par: ParResponse = resp.json().map_err(|_| AtprotoError::InvalidResponse("PAR response without request_uri".into()))?;
        let mut authorization_url =
            Url::parse(&as_info.authorization_endpoint).map_err(|_| AtprotoError::HostileMetadata("bad authorization endpoint".into()))?;
        authorization_url.query_pairs_mut().append_pair("client_id", &client_id).append_pair("request_uri", &par.request_uri);

        tracing::info!(issuer = %as_info.issuer, did = ?expected_did, "ATProto login started");
        Ok(PendingLogin {
            state,
            authorization_url: authorization_url.to_string(),
            issuer: as_info.issuer.clone(),
            pkce_verifier,
            dpop_private_jwk: dpop.to_private_jwk_json(),
            expected_did,
            handle,
            pds_url: pds_url.map(|u| origin_string(&u)),
            as_metadata: as_info,
            redirect_uri,
            scope,
            client_id: Some(client_id),
            created_at: unix_now(),
        })
    }
}
