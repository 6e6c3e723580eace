//! What every request shares: settings, the session store and atsso's metadata.
use std::time::Duration;

use openidconnect::reqwest;
use tokio::sync::OnceCell;

use crate::{config::Settings, error::AppError, provider::Provider, session::SessionStore};

pub struct AppState {
    pub settings: Settings,
    pub sessions: SessionStore,
    pub cookie_name: String,
    http: reqwest::Client,
    provider: OnceCell<Provider>,
}

impl AppState {
    pub fn new(settings: Settings) -> Result<Self, reqwest::Error> {
        // openidconnect requires a client that does not follow redirects (a redirect could
        // otherwise carry a code or token to another host).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(AppState {
            cookie_name: settings.cookie_name(),
            settings,
            sessions: SessionStore::default(),
            http,
            provider: OnceCell::new(),
        })
    }

    /// atsso's metadata, discovered on first use; a failed discovery is retried next time.
    pub async fn provider(&self) -> Result<&Provider, AppError> {
        self.provider
            .get_or_try_init(|| Provider::discover(&self.settings, self.http.clone()))
            .await
            .map_err(|detail| {
                tracing::warn!(%detail, "discovery failed");
                AppError::upstream("atsso is not reachable", detail)
            })
    }
}
