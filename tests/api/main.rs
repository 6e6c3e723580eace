//! Integration tests: the real server on a random port, driven over HTTP.
mod access_token_alg;
mod admin;
mod admin_browser;
mod atproto_login;
mod authorize_errors;
mod backchannel_ssrf;
mod client_atproto_scopes;
mod cluster_cache;
mod first_start;
mod grant_families;
mod helpers;
mod hygiene;
mod key_rotation;
mod logout;
#[path = "../support/mock_pds.rs"]
mod mock_pds;
mod operations;
mod outbox;
mod pages;
mod pkce;
mod provider_flow;
mod rp;
mod security;
mod token_errors;
mod token_hardening;
mod upstream_refresh;
mod xrpc_proxy;
