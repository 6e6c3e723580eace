//! Framework-free ATProto OAuth client (atproto OAuth profile: PAR + PKCE + DPoP).
//!
//! Everything that talks to a host named by a user goes through [`http::SafeHttp`].
//! The module knows nothing of the OIDC provider; its output is an
//! [`client::UpstreamIdentity`] plus [`client::UpstreamTokens`] for the caller to store sealed.

pub mod client;
pub mod dns;
pub mod dpop;
pub mod dpop_http;
pub mod error;
pub mod http;
pub mod metadata;
pub mod permission;
pub mod profile;
pub mod resolve;
pub mod syntax;
pub mod urls;

pub use client::{
    AtprotoClient, AtprotoClientConfig, CallbackParams, ClientMode, ClientSigningKey, LoginResult, PendingLogin, UpstreamIdentity,
    UpstreamTokens,
};
pub use error::AtprotoError;
pub use metadata::AuthServerInfo;
