//! The OpenID Connect provider toward tenant apps. It knows clients, codes, tokens and sessions,
//! and never calls a PDS.
pub mod access;
pub mod authorize;
pub mod claims;
pub mod clients;
pub mod discovery;
pub mod end_session;
pub mod grant_token;
pub mod issue;
pub mod params;
pub mod revocation;
pub mod token;
pub mod userinfo;
