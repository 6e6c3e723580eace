//! `cargo run` entry point: settings from the environment, then serve.
use std::net::TcpListener;

use tenant_app::Settings;
use tracing_subscriber::EnvFilter;

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("APP_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("tenant-app: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(&settings.bind) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("tenant-app: cannot listen on {}: {error}", settings.bind);
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(app = %settings.app_name, url = %settings.app_url, issuer = %settings.issuer, "listening on {}", settings.bind);
    let server = match tenant_app::start(settings, listener) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("tenant-app: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match server.await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tenant-app: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
