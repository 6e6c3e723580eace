//! The `atsso` command line: serve, migrate, manage clients and signing keys.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{path::PathBuf, process::ExitCode};

use atsso::{
    admin::auth::{self as admin_auth, TokenKind},
    audit::{self, Actor, CLI_ACTOR},
    config::{Config, LogFormat},
    keys,
    oidc::clients::{self, NewClient},
    open_store, Application,
};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "atsso", version, about = "SSO server: ATProto identity in, OpenID Connect out")]
struct Cli {
    /// Optional TOML configuration file (ATSSO_* environment variables override it).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (creates the data directory, keys and database on first start).
    Serve,
    /// Run database migrations and exit.
    Migrate,
    /// Manage tenant clients (relying parties).
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Manage the ID-token signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// (bench build) Register a client and open a session; prints the benchmark target JSON.
    #[cfg(feature = "bench-seam")]
    BenchSetup {
        #[arg(long, default_value = "http://127.0.0.1:9/bench/callback")]
        redirect_uri: String,
    },
    /// (bench build) Signatures per second with josekit (RS256 and ES256) on N threads.
    #[cfg(feature = "bench-seam")]
    BenchSign {
        #[arg(long, default_value_t = 2)]
        threads: usize,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// (bench build) Seed users and refresh tokens for the growth benchmark.
    #[cfg(feature = "bench-seam")]
    BenchSeed {
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        #[arg(long, default_value_t = 1_000_000)]
        refresh_tokens: usize,
    },
    /// Manage admin API tokens (for /api/admin and dynamic registration).
    AdminTokens {
        #[command(subcommand)]
        command: AdminTokensCommand,
    },
}

#[derive(Subcommand)]
enum AdminTokensCommand {
    /// Create a token; it is printed once (only its hash is stored).
    Create {
        #[arg(long)]
        name: String,
        /// An RFC 7591 initial access token: may register clients at /oauth2/register, nothing else.
        #[arg(long)]
        registration: bool,
    },
    /// List tokens (names and dates; never the tokens).
    List,
    /// Revoke a token by name: it stops working at once.
    Revoke { name: String },
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Register a client; prints its id and (for confidential clients) its secret, once.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
        /// A public client (no secret; PKCE required), e.g. a SPA or a native app.
        #[arg(long)]
        public: bool,
        /// Skip the consent page for this client.
        #[arg(long)]
        first_party: bool,
        #[arg(long = "post-logout-redirect-uri")]
        post_logout_redirect_uris: Vec<String>,
        #[arg(long)]
        backchannel_logout_uri: Option<String>,
        #[arg(long)]
        frontchannel_logout_uri: Option<String>,
        /// Allowed scopes (default: openid profile email offline_access).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Let a legacy confidential client sign in without PKCE (required by default; never
        /// allowed for public clients).
        #[arg(long)]
        allow_no_pkce: bool,
        /// Sign this client's access tokens with RS256 or ES256 (default: ATSSO_ACCESS_TOKEN_ALG).
        #[arg(long, value_name = "RS256|ES256")]
        access_token_alg: Option<String>,
        /// An upstream ATProto permission this client may ask for, e.g.
        /// `repo:com.example.post?action=create` (`atproto:` prefix optional; repeatable).
        #[arg(long = "atproto-scope", value_name = "PERMISSION")]
        atproto_scopes: Vec<String>,
        /// Print one JSON object {"client_id": ..., "client_secret": ...}.
        #[arg(long)]
        json: bool,
    },
    /// List clients.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Change a client's PKCE requirement, access-token algorithm or ATProto permissions.
    #[command(group = clap::ArgGroup::new("change").required(true).multiple(true))]
    Update {
        client_id: String,
        /// Let this legacy confidential client sign in without PKCE (refused for public clients).
        #[arg(long, group = "change", conflicts_with = "require_pkce")]
        allow_no_pkce: bool,
        /// Require PKCE (S256) of this client again (the default).
        #[arg(long, group = "change")]
        require_pkce: bool,
        /// Sign this client's access tokens with RS256 or ES256; `default` follows
        /// ATSSO_ACCESS_TOKEN_ALG again.
        #[arg(long, group = "change", value_name = "RS256|ES256|default")]
        access_token_alg: Option<String>,
        /// Replace the upstream ATProto permissions this client may ask for (repeatable).
        #[arg(long = "atproto-scope", group = "change", value_name = "PERMISSION", conflicts_with = "clear_atproto_scopes")]
        atproto_scopes: Vec<String>,
        /// Allow this client no ATProto permissions.
        #[arg(long, group = "change")]
        clear_atproto_scopes: bool,
    },
    /// Issue a new secret; the old one stops working.
    RotateSecret {
        client_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Disable a client: its tokens are revoked at once and its requests are refused.
    Disable { client_id: String },
    /// Enable a disabled client.
    Enable { client_id: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make new signing keys (RS256 and ES256). They are published at once and sign after
    /// ATSSO_KEY_ACTIVATION_DELAY_SECS, when every node and every JWKS cache has them; the old
    /// keys sign until then and stay published until their tokens expire.
    Rotate {
        /// Sign with the new keys at once: only after a key leak. Relying parties holding a
        /// cached JWKS reject the new tokens until their cache expires (up to its max-age).
        #[arg(long)]
        now: bool,
    },
    /// List every signing key with its state (published, active, retired) and times.
    List,
}

/// Log lines go to stderr: readable text by default, one JSON object per line with
/// `ATSSO_LOG_FORMAT=json` (each with the fields of its spans, e.g. the request id).
fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_env("ATSSO_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    // Colours only on a terminal: a file or a log shipper gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(true).init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = match LogFormat::from_env() {
        Ok(format) => format,
        Err(error) => {
            eprintln!("atsso: {error}");
            return ExitCode::FAILURE;
        }
    };
    init_tracing(log_format);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("atsso: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let config = Config::load(cli.config.as_deref()).map_err(|e| e.to_string())?;
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            open_store(&config).await.map_err(|e| e.to_string())?;
            println!("migrations applied");
            Ok(())
        }
        Command::Clients { command } => clients_command(config, command).await,
        #[cfg(feature = "bench-seam")]
        Command::BenchSetup { redirect_uri } => {
            let state = atsso::build_state(config).await.map_err(|e| e.to_string())?;
            println!("PEER_READY {}", atsso::bench_seam::setup(&state, &redirect_uri).await?);
            Ok(())
        }
        #[cfg(feature = "bench-seam")]
        Command::BenchSign { threads, seconds } => {
            println!("{}", atsso::bench_seam::signing_rate(threads, seconds)?);
            Ok(())
        }
        #[cfg(feature = "bench-seam")]
        Command::BenchSeed { users, refresh_tokens } => {
            let state = atsso::build_state(config).await.map_err(|e| e.to_string())?;
            atsso::bench_seam::seed(&state, users, refresh_tokens).await?;
            println!("seeded {users} users and {refresh_tokens} refresh tokens");
            Ok(())
        }
        Command::AdminTokens { command } => admin_tokens_command(config, command).await,
        Command::Keys { command } => keys_command(config, command).await,
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let issuer = config.issuer();
    let app = Application::build(config).await.map_err(|e| e.to_string())?;
    tracing::info!(issuer = %issuer, port = app.port(), "atsso is listening");
    tracing::info!("discovery: {issuer}/.well-known/openid-configuration");
    tracing::info!("login page: {issuer}/login");
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

async fn keys_command(config: Config, command: KeysCommand) -> Result<(), String> {
    use keys::utc_text;
    let (store, sealer) = open_store(&config).await.map_err(|e| e.to_string())?;
    match command {
        KeysCommand::Rotate { now } => {
            let delay = if now { 0 } else { config.key_activation_delay_secs };
            let rotation = keys::rotate(&store, &sealer, delay).await.map_err(|e| e.to_string())?;
            let details = format!("es256_kid={} activates_at={}", rotation.es256_kid, rotation.activates_at);
            audit::record(&store, &cli_actor(), "keys.rotate", Some(&rotation.rs256_kid), Some(details)).await;
            println!("new RS256 key {} (ID and logout tokens, RS256 access tokens)", rotation.rs256_kid);
            println!("new ES256 key {} (ES256 access tokens)", rotation.es256_kid);
            let at = utc_text(rotation.activates_at);
            if now {
                println!("active now ({at}): relying parties with a cached JWKS reject new tokens until their cache expires");
            } else {
                println!("published now, active from {at} (in {delay} s); the old keys sign until then");
            }
            println!("older keys stay published until their tokens expire");
        }
        KeysCommand::List => {
            println!("{:<18} {:<6} {:<10} {:<21} {:<21} {:<21} in JWKS", "kid", "alg", "state", "created", "activates", "retired");
            for key in keys::list(&store, &config).await.map_err(|e| e.to_string())? {
                println!(
                    "{:<18} {:<6} {:<10} {:<21} {:<21} {:<21} {}",
                    key.kid,
                    key.alg,
                    key.state,
                    utc_text(key.created_at),
                    utc_text(key.activates_at),
                    key.retired_at.map(utc_text).unwrap_or_else(|| "-".into()),
                    if key.published { "yes" } else { "no" }
                );
            }
        }
    }
    Ok(())
}

fn cli_actor() -> Actor {
    Actor::new(CLI_ACTOR, None)
}

async fn admin_tokens_command(config: Config, command: AdminTokensCommand) -> Result<(), String> {
    let (store, _) = open_store(&config).await.map_err(|e| e.to_string())?;
    match command {
        AdminTokensCommand::Create { name, registration } => {
            let kind = if registration { TokenKind::Registration } else { TokenKind::Admin };
            let token = admin_auth::create_token(&store, &name, kind).await.map_err(|e| e.to_string())?;
            audit::record(&store, &cli_actor(), "admin_token.create", Some(&name), Some(format!("kind={}", kind.as_str()))).await;
            println!("{token}");
            eprintln!("(shown once: store it now; send it as `Authorization: Bearer <token>`)");
            Ok(())
        }
        AdminTokensCommand::List => {
            for row in store.list_admin_tokens().await.map_err(|e| e.to_string())? {
                let status = match row.revoked_at {
                    Some(at) => format!("revoked at {at}"),
                    None => "active".to_string(),
                };
                let used = row.last_used_at.map(|t| t.to_string()).unwrap_or_else(|| "never".into());
                println!("{}\t{}\tcreated {}\tlast used {}\t{}", row.name, row.kind, row.created_at, used, status);
            }
            Ok(())
        }
        AdminTokensCommand::Revoke { name } => {
            if !store.revoke_admin_token(&name, atsso::clock::now()).await.map_err(|e| e.to_string())? {
                return Err(format!("no active admin token named `{name}`"));
            }
            audit::record(&store, &cli_actor(), "admin_token.revoke", Some(&name), None).await;
            println!("admin token {name} revoked");
            Ok(())
        }
    }
}

async fn clients_command(config: Config, command: ClientsCommand) -> Result<(), String> {
    let (store, _) = open_store(&config).await.map_err(|e| e.to_string())?;
    match command {
        ClientsCommand::Add {
            name,
            redirect_uris,
            public,
            first_party,
            post_logout_redirect_uris,
            backchannel_logout_uri,
            frontchannel_logout_uri,
            scopes,
            allow_no_pkce,
            access_token_alg,
            atproto_scopes,
            json,
        } => {
            let new = NewClient {
                name,
                redirect_uris,
                post_logout_redirect_uris,
                backchannel_logout_uri,
                frontchannel_logout_uri,
                public,
                first_party,
                scopes: (!scopes.is_empty()).then_some(scopes),
                allow_no_pkce,
                access_token_alg,
                atproto_scopes,
            };
            let (client, secret) = clients::register(&store, new).await.map_err(|e| e.to_string())?;
            audit::record(&store, &cli_actor(), "client.create", Some(&client.client_id), Some(format!("name={}", client.name))).await;
            if json {
                println!("{}", serde_json::json!({ "client_id": client.client_id, "client_secret": secret }));
            } else {
                println!("client_id:     {}", client.client_id);
                match secret {
                    Some(secret) => println!("client_secret: {secret}\n(shown once: store it now)"),
                    None => println!("public client: no secret; PKCE is required"),
                }
            }
            Ok(())
        }
        ClientsCommand::List { json } => {
            let clients = store.list_clients().await.map_err(|e| e.to_string())?;
            if json {
                let rows: Vec<_> = clients
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "client_id": c.client_id, "name": c.name, "public": c.is_public(),
                            "first_party": c.first_party, "enabled": c.enabled,
                            "redirect_uris": c.redirect_uris, "post_logout_redirect_uris": c.post_logout_redirect_uris,
                            "backchannel_logout_uri": c.backchannel_logout_uri, "scopes": c.allowed_scopes,
                            "allow_no_pkce": c.allow_no_pkce,
                            "access_token_alg": c.access_token_alg.map(|alg| alg.as_str()),
                            "atproto_scopes": c.atproto_scopes,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for c in clients {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        c.client_id,
                        c.name,
                        match (c.is_public(), c.allow_no_pkce) {
                            (true, _) => "public",
                            (false, false) => "confidential",
                            (false, true) => "confidential (PKCE not required)",
                        },
                        if c.enabled { "enabled" } else { "disabled" },
                        c.redirect_uris.join(" ")
                    );
                }
            }
            Ok(())
        }
        ClientsCommand::Update { client_id, allow_no_pkce, require_pkce, access_token_alg, atproto_scopes, clear_atproto_scopes } => {
            let change = clients::ClientUpdate {
                allow_no_pkce: (allow_no_pkce || require_pkce).then_some(allow_no_pkce),
                access_token_alg: access_token_alg.map(|alg| (alg != "default").then_some(alg)),
                atproto_scopes: (clear_atproto_scopes || !atproto_scopes.is_empty()).then_some(atproto_scopes),
                ..Default::default()
            };
            let before = store.client(&client_id).await.map_err(|e| e.to_string())?;
            let client = clients::update(&store, &client_id, change).await.map_err(|e| e.to_string())?;
            let mut changed = Vec::new();
            if before.as_ref().is_some_and(|b| b.allow_no_pkce != client.allow_no_pkce) {
                changed.push("allow_no_pkce");
            }
            if before.as_ref().is_some_and(|b| b.access_token_alg != client.access_token_alg) {
                changed.push("access_token_alg");
            }
            if before.as_ref().is_some_and(|b| b.atproto_scopes != client.atproto_scopes) {
                changed.push("atproto_scopes");
            }
            let details = if changed.is_empty() { "no changes".to_owned() } else { format!("fields={}", changed.join(",")) };
            audit::record(&store, &cli_actor(), "client.update", Some(&client_id), Some(details)).await;
            if client.allow_no_pkce {
                println!("client {client_id} may sign in without PKCE");
            } else {
                println!("client {client_id} must use PKCE");
            }
            match client.access_token_alg {
                Some(alg) => println!("access tokens: {}", alg.as_str()),
                None => println!("access tokens: {} (ATSSO_ACCESS_TOKEN_ALG)", config.access_token_alg.as_str()),
            }
            if client.atproto_scopes.is_empty() {
                println!("atproto permissions: none");
            } else {
                println!("atproto permissions: {}", client.atproto_scopes.join(" "));
            }
            Ok(())
        }
        ClientsCommand::RotateSecret { client_id, json } => {
            let secret = clients::rotate_secret(&store, None, &client_id).await.map_err(|e| e.to_string())?;
            audit::record(&store, &cli_actor(), "client.rotate_secret", Some(&client_id), None).await;
            if json {
                println!("{}", serde_json::json!({ "client_id": client_id, "client_secret": secret }));
            } else {
                println!("client_secret: {secret}\n(shown once: the old secret no longer works)");
            }
            Ok(())
        }
        ClientsCommand::Disable { client_id } => {
            clients::set_enabled(&store, None, &client_id, false).await.map_err(|e| e.to_string())?;
            audit::record(&store, &cli_actor(), "client.disable", Some(&client_id), None).await;
            println!("client {client_id} disabled; its tokens are revoked");
            Ok(())
        }
        ClientsCommand::Enable { client_id } => {
            clients::set_enabled(&store, None, &client_id, true).await.map_err(|e| e.to_string())?;
            audit::record(&store, &cli_actor(), "client.enable", Some(&client_id), None).await;
            println!("client {client_id} enabled");
            Ok(())
        }
    }
}
