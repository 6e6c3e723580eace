//! atsso: a central SSO server that lets people sign in with their ATProto identity and gives
//! tenant apps standard OpenID Connect.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod admin;
pub mod atproto;
pub mod audit;
#[cfg(feature = "bench-seam")]
pub mod bench_seam;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
pub mod keys;
pub mod limits;
pub mod net;
pub mod oidc;
pub mod proxy;
pub mod sso;
pub mod state;
pub mod store;
pub mod templates;
mod web;

use std::{net::TcpListener, sync::Arc, time::Duration};

use crate::{config::Config, crypto::seal::Sealer, crypto::secrets::SecretVerifier, keys::KeyRing, state::AppState, store::Store};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("data directory {path}: {problem}")]
    DataDir { path: String, problem: String },
    #[error(transparent)]
    Seal(#[from] crypto::seal::SealError),
    #[error("database: {0}")]
    Store(#[from] store::StoreError),
    #[error("signing keys: {0}")]
    Keys(#[from] keys::KeyRingError),
    #[error("ATProto client: {0}")]
    Atproto(#[from] atproto::AtprotoError),
    #[error("cannot listen on {bind}: {problem}")]
    Bind { bind: String, problem: String },
}

/// Opens the data directory, the master key and the database (running migrations under the
/// startup lock).
pub async fn open_store(config: &Config) -> Result<(Store, Sealer), StartError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| StartError::DataDir { path: config.data_dir.display().to_string(), problem: e.to_string() })?;
    let sealer = match &config.master_key {
        Some(key) => Sealer::from_base64(key.expose())?,
        None => Sealer::load_or_create_file(&config.data_dir.join("master.key"))?,
    };
    let store = Store::connect(&config.database_url, config.database_max_connections).await?;
    Ok((store, sealer))
}

/// Everything the HTTP server needs, built from a config.
pub async fn build_state(config: Config) -> Result<AppState, StartError> {
    let (store, sealer) = open_store(&config).await?;
    // Nodes starting together take turns: the first generates the keys, the others load them.
    let lock = store.startup_lock().await?;
    // A server keeps read caches: on Postgres they need other nodes' announcements.
    store.start_invalidation_listener();
    let keys = KeyRing::load(&store, &sealer, &config).await?;
    let atproto = build_atproto_client(&store, &sealer, &config).await?;
    lock.release().await?;
    let limits = limits::Limits::new(&config.rate_limits);
    Ok(AppState {
        atproto,
        discovery_json: oidc::discovery::document(&config)?.into_bytes().into(),
        config: Arc::new(config),
        store,
        sealer,
        keys: Arc::new(keys),
        secrets: Arc::new(SecretVerifier::default()),
        limits,
        shutdown: tokio_util::sync::CancellationToken::new(),
    })
}

/// Our ATProto OAuth client: the loopback development client when the public URL is loopback
/// http, otherwise the confidential client whose ES256 key is generated once and stored sealed
/// (so every node and every restart presents the same key).
async fn build_atproto_client(store: &Store, sealer: &Sealer, config: &Config) -> Result<atproto::AtprotoClient, StartError> {
    use atproto::{AtprotoClientConfig, ClientMode, ClientSigningKey};
    let loopback = config.public_url.scheme() == "http" && net::is_loopback_host(&config.public_url);
    let mut client_config = AtprotoClientConfig::new(config.public_url.clone())?;
    client_config.mode = if loopback { ClientMode::Loopback } else { ClientMode::Confidential };
    client_config.scope = config.upstream_scope.clone();
    client_config.plc_directory_url = config.plc_directory_url.clone();
    client_config.handle_resolver_url = config.handle_resolver_url.clone();
    client_config.allow_insecure_loopback = config.allow_insecure_loopback_upstream;
    client_config.email_trusted_issuers = config.email_trusted_issuers.clone();
    if config.allow_insecure_loopback_upstream {
        tracing::warn!(
            "ATSSO_ALLOW_INSECURE_LOOPBACK_UPSTREAM is on: plain-http loopback PDS/PLC hosts are allowed. Never use this in production."
        );
    }
    let key = match store.atproto_client_keys().await?.into_iter().next() {
        Some(row) => {
            let pem = sealer.open_str(&row.private_key_sealed)?;
            ClientSigningKey::from_pem(&pem, row.kid)?
        }
        None => {
            let key = ClientSigningKey::generate(crypto::random_token(12))?;
            store.insert_atproto_client_key(key.kid(), &sealer.seal_str(&key.to_pem())?, clock::now()).await?;
            key
        }
    };
    Ok(atproto::AtprotoClient::new(client_config, Some(key))?)
}

/// A running server (zero-to-production style: tests start it on port 0).
pub struct Application {
    port: u16,
    state: AppState,
    server: web::Server,
    /// The outbox worker: it ends when `state.shutdown` is cancelled (rows it has not finished
    /// go back to other nodes).
    outbox_worker: tokio::task::JoinHandle<()>,
    /// The separate `/metrics` listener (`ATSSO_METRICS_BIND`) and its port.
    metrics: Option<(web::Server, u16)>,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let listener =
            TcpListener::bind(&config.bind).map_err(|e| StartError::Bind { bind: config.bind.clone(), problem: e.to_string() })?;
        Self::build_with_listener(config, listener).await
    }

    pub async fn build_with_listener(config: Config, listener: TcpListener) -> Result<Self, StartError> {
        let bind = config.bind.clone();
        let state = build_state(config).await?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let server = web::serve(state.clone(), listener).map_err(|e| StartError::Bind { bind, problem: e.to_string() })?;
        let metrics = match state.config.metrics_bind.clone() {
            Some(bind) => {
                let bind_error = |e: std::io::Error| StartError::Bind { bind: bind.clone(), problem: e.to_string() };
                let listener = TcpListener::bind(&bind).map_err(bind_error)?;
                let port = listener.local_addr().map_err(bind_error)?.port();
                Some((web::serve_metrics(state.clone(), listener).map_err(bind_error)?, port))
            }
            None => None,
        };
        spawn_background_tasks(state.clone());
        let outbox_worker = sso::outbox::spawn_worker(state.clone(), state.shutdown.clone());
        Ok(Self { port, state, server, outbox_worker, metrics })
    }

    /// The port of the separate metrics listener, when `ATSSO_METRICS_BIND` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(_, port)| *port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Cancelling it stops the background tasks and the outbox worker (rows it has not finished
    /// go back to other nodes); the HTTP server stops on SIGTERM/SIGINT.
    pub fn shutdown_token(&self) -> tokio_util::sync::CancellationToken {
        self.state.shutdown.clone()
    }

    /// Serves until SIGTERM/SIGINT; then stops accepting, lets in-flight requests finish (at most
    /// `web::SHUTDOWN_TIMEOUT_SECS`), stops the background tasks and commits queued writes.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics.map(|(server, _)| {
            let handle = server.handle();
            tokio::spawn(server);
            handle
        });
        let served = self.server.await;
        tracing::info!("stopped accepting; in-flight requests are done");
        if let Some(handle) = metrics {
            handle.stop(true).await;
        }
        self.state.shutdown.cancel();
        if let Err(error) = self.outbox_worker.await {
            tracing::error!(%error, "the outbox worker ended abnormally");
        }
        match self.state.store.close().await {
            Ok(()) => tracing::info!("queued writes committed; database closed"),
            Err(error) => tracing::error!(%error, "closing the database failed"),
        }
        served
    }
}

/// Sweeps expired rows and reloads signing keys (so rotations on another node are seen).
/// Both end when `state.shutdown` is cancelled.
fn spawn_background_tasks(state: AppState) {
    let keys_state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        let mut minutes: u64 = 0;
        loop {
            tokio::select! {
                _ = state.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            state.limits.forget_idle();
            if minutes.is_multiple_of(10) {
                match state.store.sweep_expired(clock::now()).await {
                    Ok(removed) if removed > 0 => tracing::info!(removed, "swept expired rows"),
                    Ok(_) => {}
                    Err(error) => tracing::error!(%error, "sweeping expired rows failed"),
                }
            }
            minutes += 1;
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(keys_state.config.key_reload_interval());
        // A rotation announced by any node (LISTEN/NOTIFY on Postgres) is loaded at once; the
        // periodic reload is the backstop that the activation delay is measured against.
        let mut announced = keys_state.store.key_changes();
        loop {
            tokio::select! {
                _ = keys_state.shutdown.cancelled() => break,
                _ = tick.tick() => {}
                changed = announced.changed() => {
                    if changed.is_err() {
                        announced = keys_state.store.key_changes();
                    }
                }
            }
            if let Err(error) = keys_state.keys.reload(&keys_state.store, &keys_state.sealer, &keys_state.config).await {
                tracing::error!(%error, "reloading signing keys failed");
            }
        }
    });
}
