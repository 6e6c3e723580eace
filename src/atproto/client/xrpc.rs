//! One XRPC call to the user's PDS with the upstream session's DPoP-bound token, for the
//! tenant XRPC proxy. The DPoP key never leaves this process.

use url::Url;

use super::{AtprotoClient, UpstreamTokens};
use crate::atproto::dpop::DpopKey;
use crate::atproto::error::AtprotoError;
use crate::atproto::http::{HttpResponse, RawBody, MAX_XRPC_RESPONSE_BYTES};
use crate::atproto::urls::join_path;

/// An XRPC request as it is sent to the PDS: the caller has checked the method's name
/// ([`crate::atproto::permission::Nsid`]) and the permissions.
#[derive(Debug, Clone)]
pub struct XrpcRequest {
    /// `GET` (a query) or `POST` (a procedure).
    pub method: XrpcMethod,
    pub nsid: String,
    /// The raw query string, without `?` (empty for none).
    pub query: String,
    pub body: Option<RawBody>,
    /// Headers passed on (`atproto-proxy`, `atproto-accept-labelers`).
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XrpcMethod {
    Get,
    Post,
}

impl XrpcMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
        }
    }
}

impl AtprotoClient {
    /// Calls `{pds_url}/xrpc/{nsid}` as the upstream session; the PDS's answer, whatever its
    /// status, is returned (bounded to [`MAX_XRPC_RESPONSE_BYTES`]).
    #[tracing::instrument(skip_all, fields(nsid = %request.nsid))]
    pub async fn xrpc(&self, tokens: &UpstreamTokens, request: &XrpcRequest) -> Result<HttpResponse, AtprotoError> {
        let dpop = DpopKey::from_private_jwk_json(&tokens.dpop_private_jwk)?;
        let pds = Url::parse(&tokens.pds_url).map_err(|_| AtprotoError::Config("bad stored PDS URL".into()))?;
        let mut url = join_path(&pds, &format!("/xrpc/{}", request.nsid))?;
        if !request.query.is_empty() {
            url.set_query(Some(&request.query));
        }
        self.dpop_http
            .request_raw(
                &dpop,
                request.method.as_str(),
                &url,
                &tokens.access_token,
                &request.headers,
                request.body.as_ref(),
                MAX_XRPC_RESPONSE_BYTES,
                AtprotoError::PdsUnreachable,
            )
            .await
    }
}
