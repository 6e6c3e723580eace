//! A minimal tenant app for atsso: OpenID Connect sign-in with the `openidconnect` crate, the
//! ID token's claims, userinfo, and single logout (RP-initiated end-session out, back-channel
//! logout in). `start` runs it on a listener; `main.rs` reads the settings from the environment.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod auth;
pub mod config;
mod error;
mod logout_token;
mod pages;
mod provider;
mod routes;
mod session;
mod state;

use std::net::TcpListener;

use actix_web::{dev::Service, web::Data, App, HttpServer};
use tracing::Instrument;

pub use config::{Settings, SettingsError};

/// Starts the app on `listener`; the returned server runs when awaited.
pub fn start(settings: Settings, listener: TcpListener) -> std::io::Result<actix_web::dev::Server> {
    let state = state::AppState::new(settings).map_err(std::io::Error::other)?;
    let data = Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap_fn(|req, srv| {
                // Method and path only: query strings carry codes and state.
                let span = tracing::info_span!("request", method = %req.method(), path = %req.path());
                let fut = srv.call(req);
                async move {
                    let response = fut.await?;
                    tracing::debug!(status = response.status().as_u16(), "served");
                    Ok(response)
                }
                .instrument(span)
            })
            .configure(routes::configure)
    })
    .workers(2)
    .listen(listener)?
    .run();
    Ok(server)
}
