//! The one place that reads configuration: defaults, then an optional TOML file, then `ATSSO_*`
//! environment variables. Validation errors name the setting.
use std::{fmt, path::PathBuf};

use serde::Deserialize;
use url::Url;

/// A secret value that never prints.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {setting}: {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

fn invalid(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError { setting, problem: problem.into() }
}

/// The TOML file: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub public_url: Option<String>,
    pub bind: Option<String>,
    pub database_url: Option<String>,
    pub data_dir: Option<String>,
    pub master_key: Option<Secret>,
    pub database_max_connections: Option<u32>,
    pub access_token_ttl_secs: Option<i64>,
    pub id_token_ttl_secs: Option<i64>,
    pub refresh_token_ttl_secs: Option<i64>,
    pub refresh_retry_window_secs: Option<i64>,
    pub session_ttl_secs: Option<i64>,
    pub plc_directory_url: Option<String>,
    pub handle_resolver_url: Option<String>,
    pub allow_insecure_loopback_upstream: Option<bool>,
    pub upstream_scope: Option<String>,
    pub email_trusted_issuers: Option<Vec<String>>,
    pub access_token_alg: Option<String>,
    pub admin_dids: Option<Vec<String>>,
    pub dynamic_registration: Option<bool>,
    pub trusted_proxies: Option<Vec<String>>,
    pub rate_limit_login: Option<u32>,
    pub rate_limit_authorize: Option<u32>,
    pub rate_limit_registration: Option<u32>,
    pub rate_limit_client_auth_failures: Option<u32>,
    pub rate_limit_admin_auth_failures: Option<u32>,
    pub xrpc_rate_per_minute: Option<u32>,
    pub xrpc_max_body_bytes: Option<u64>,
    pub key_activation_delay_secs: Option<i64>,
    pub metrics_bind: Option<String>,
    pub metrics_token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Issuer and base of every URL we publish, without a trailing slash.
    pub public_url: Url,
    pub bind: String,
    pub database_url: String,
    pub data_dir: PathBuf,
    /// Base64 (32 bytes) master key; when absent it is read from / written to `data_dir/master.key`.
    pub master_key: Option<Secret>,
    pub database_max_connections: u32,
    pub access_token_ttl_secs: i64,
    pub id_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    /// How long a rotated refresh token may be presented again as a retry of a response that
    /// was lost (`ATSSO_REFRESH_RETRY_WINDOW_SECS`, default 0: every second presentation is a
    /// reuse and revokes the family). Only while its successor has not been used.
    pub refresh_retry_window_secs: i64,
    pub session_ttl_secs: i64,
    pub plc_directory_url: Url,
    pub handle_resolver_url: Option<Url>,
    pub allow_insecure_loopback_upstream: bool,
    pub upstream_scope: String,
    /// Authorization servers whose accounts' emails may be `email_verified: true`
    /// (`ATSSO_EMAIL_TRUSTED_ISSUERS`, comma-separated issuer URLs; default the Bluesky entryway).
    pub email_trusted_issuers: Vec<String>,
    /// The access-token algorithm of clients that did not choose one (`ATSSO_ACCESS_TOKEN_ALG`):
    /// RS256 (default: what RS256-only verifiers accept) or ES256 (cheaper to sign). ID tokens
    /// are always RS256.
    pub access_token_alg: crate::crypto::signing::Alg,
    /// DIDs allowed into the admin UI (`ATSSO_ADMIN_DIDS`, comma-separated).
    pub admin_dids: Vec<String>,
    /// RFC 7591 dynamic client registration at `/oauth2/register` (initial access token required).
    pub dynamic_registration: bool,
    /// Proxies whose `X-Forwarded-For` we believe (`ATSSO_TRUSTED_PROXIES`, CIDRs). From any other
    /// peer the header is ignored: the TCP peer is the source (audit log, rate limits).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub rate_limits: RateLimits,
    /// Largest request body of a proxied XRPC call (`ATSSO_XRPC_MAX_BODY_BYTES`, default 5 MiB:
    /// blob uploads); larger ones are answered 413.
    pub xrpc_max_body_bytes: usize,
    /// A rotated signing key is published this long before it signs (`ATSSO_KEY_ACTIVATION_DELAY_SECS`).
    pub key_activation_delay_secs: i64,
    /// A separate listener serving only `/metrics` (`ATSSO_METRICS_BIND`, e.g. 127.0.0.1:9464).
    pub metrics_bind: Option<String>,
    /// When set, `/metrics` on the main listener answers to `Authorization: Bearer <token>`.
    pub metrics_token: Option<Secret>,
}

impl Config {
    /// Whether `/metrics` is served anywhere (otherwise nothing is recorded).
    pub fn metrics_enabled(&self) -> bool {
        self.metrics_bind.is_some() || self.metrics_token.is_some()
    }
}

/// Abuse limits, each a count per minute (0 turns a limit off). Counted per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// `POST /login` per source address (each costs DNS and up to six outbound fetches).
    pub login: u32,
    /// Authorization requests from browsers without a session (each parks a request) per address.
    pub authorize: u32,
    /// `POST /oauth2/register` per source address.
    pub registration: u32,
    /// Failed client authentications at the token, revocation and introspection endpoints, per
    /// client and per source address. Successes are never counted.
    pub client_auth_failures: u32,
    /// Failed admin API / initial access token presentations per source address.
    pub admin_auth_failures: u32,
    /// Proxied XRPC calls (`/xrpc/{nsid}`) per app and user (`ATSSO_XRPC_RATE_PER_MINUTE`).
    pub xrpc: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { login: 30, authorize: 120, registration: 10, client_auth_failures: 10, admin_auth_failures: 10, xrpc: 300 }
    }
}

/// Default of `ATSSO_XRPC_MAX_BODY_BYTES`.
pub const DEFAULT_XRPC_MAX_BODY_BYTES: usize = 5 * 1024 * 1024;

/// A metrics token shorter than this is refused (it guards the only non-public endpoint
/// without rate limits).
const MIN_METRICS_TOKEN_LEN: usize = 16;

/// Every setting name (`ATSSO_*` environment variable) the server reads. Tests check that
/// config.rs reads no other and that README.md and docker-compose.yml name no other.
pub const SETTINGS: &[&str] = &[
    "ATSSO_PUBLIC_URL",
    "ATSSO_BIND",
    "ATSSO_DATA_DIR",
    "ATSSO_DATABASE_URL",
    "ATSSO_DATABASE_MAX_CONNECTIONS",
    "ATSSO_MASTER_KEY",
    "ATSSO_ACCESS_TOKEN_TTL_SECS",
    "ATSSO_ID_TOKEN_TTL_SECS",
    "ATSSO_REFRESH_TOKEN_TTL_SECS",
    "ATSSO_REFRESH_RETRY_WINDOW_SECS",
    "ATSSO_SESSION_TTL_SECS",
    "ATSSO_KEY_ACTIVATION_DELAY_SECS",
    "ATSSO_PLC_DIRECTORY_URL",
    "ATSSO_HANDLE_RESOLVER_URL",
    "ATSSO_UPSTREAM_SCOPE",
    "ATSSO_EMAIL_TRUSTED_ISSUERS",
    "ATSSO_ALLOW_INSECURE_LOOPBACK_UPSTREAM",
    "ATSSO_ADMIN_DIDS",
    "ATSSO_DYNAMIC_REGISTRATION",
    "ATSSO_ACCESS_TOKEN_ALG",
    "ATSSO_TRUSTED_PROXIES",
    "ATSSO_RATE_LIMIT_LOGIN",
    "ATSSO_RATE_LIMIT_AUTHORIZE",
    "ATSSO_RATE_LIMIT_REGISTRATION",
    "ATSSO_RATE_LIMIT_CLIENT_AUTH_FAILURES",
    "ATSSO_RATE_LIMIT_ADMIN_AUTH_FAILURES",
    "ATSSO_XRPC_RATE_PER_MINUTE",
    "ATSSO_XRPC_MAX_BODY_BYTES",
    "ATSSO_METRICS_BIND",
    "ATSSO_METRICS_TOKEN",
    "ATSSO_LOG",
    "ATSSO_LOG_FORMAT",
];

/// How log lines are written (`ATSSO_LOG_FORMAT`): read before everything else, so that even a
/// configuration error is logged in the chosen format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::parse(std::env::var("ATSSO_LOG_FORMAT").ok().as_deref())
    }

    fn parse(value: Option<&str>) -> Result<Self, ConfigError> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("text") => Ok(Self::Text),
            Some("json") => Ok(Self::Json),
            Some(other) => Err(invalid("ATSSO_LOG_FORMAT", format!("`{other}` is not json or text"))),
        }
    }
}

/// Authorization codes live at most this long (seconds).
pub const AUTHORIZATION_CODE_TTL_SECS: i64 = 60;
/// A stored authorization request waits this long for the user to log in / consent.
pub const AUTHORIZATION_REQUEST_TTL_SECS: i64 = 900;

impl Config {
    /// Loads the configuration from an optional TOML file and the process environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let file_config = match file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| invalid("--config", format!("cannot read {}: {e}", path.display())))?;
                toml::from_str::<FileConfig>(&text).map_err(|e| invalid("--config", format!("{}: {}", path.display(), e.message())))?
            }
            None => FileConfig::default(),
        };
        Self::from_sources(file_config, |name| std::env::var(name).ok())
    }

    /// Builds a config from a file config and an environment lookup (tests pass their own).
    pub fn from_sources(file: FileConfig, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let bind = env("ATSSO_BIND").or(file.bind).unwrap_or_else(|| "127.0.0.1:8080".into());
        if bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid("ATSSO_BIND", format!("`{bind}` is not an address:port")));
        }
        let public_url_text = env("ATSSO_PUBLIC_URL").or(file.public_url).unwrap_or_else(|| format!("http://{bind}"));
        let public_url = parse_base_url("ATSSO_PUBLIC_URL", &public_url_text)?;

        let data_dir = PathBuf::from(env("ATSSO_DATA_DIR").or(file.data_dir).unwrap_or_else(|| "./data".into()));
        let database_url = env("ATSSO_DATABASE_URL")
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", data_dir.join("atsso.db").display()));
        if !(database_url.starts_with("sqlite:") || database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(invalid("ATSSO_DATABASE_URL", "must start with sqlite: or postgres://"));
        }
        let master_key = env("ATSSO_MASTER_KEY").map(Secret::new).or(file.master_key);

        let number = |name: &'static str, value: Option<i64>, default: i64| -> Result<i64, ConfigError> {
            let parsed = match env(name) {
                Some(text) => text.parse::<i64>().map_err(|_| invalid(name, format!("`{text}` is not a number")))?,
                None => value.unwrap_or(default),
            };
            if parsed <= 0 {
                return Err(invalid(name, "must be greater than zero"));
            }
            Ok(parsed)
        };
        let access_token_ttl_secs = number("ATSSO_ACCESS_TOKEN_TTL_SECS", file.access_token_ttl_secs, 600)?;
        let id_token_ttl_secs = number("ATSSO_ID_TOKEN_TTL_SECS", file.id_token_ttl_secs, 3600)?;
        let refresh_token_ttl_secs = number("ATSSO_REFRESH_TOKEN_TTL_SECS", file.refresh_token_ttl_secs, 30 * 86400)?;
        let refresh_retry_window_secs = match env("ATSSO_REFRESH_RETRY_WINDOW_SECS") {
            Some(text) => text.parse::<i64>().ok(),
            None => Some(file.refresh_retry_window_secs.unwrap_or(0)),
        }
        .filter(|secs| (0..=60).contains(secs))
        .ok_or_else(|| invalid("ATSSO_REFRESH_RETRY_WINDOW_SECS", "must be 0 to 60 seconds (a lost response is retried at once)"))?;
        let session_ttl_secs = number("ATSSO_SESSION_TTL_SECS", file.session_ttl_secs, 14 * 86400)?;
        let key_activation_delay_secs = number("ATSSO_KEY_ACTIVATION_DELAY_SECS", file.key_activation_delay_secs, 600)?;
        let database_max_connections = number(
            "ATSSO_DATABASE_MAX_CONNECTIONS",
            file.database_max_connections.map(i64::from),
            if database_url.starts_with("sqlite:") { 4 } else { 16 },
        )?;
        let database_max_connections =
            u32::try_from(database_max_connections).map_err(|_| invalid("ATSSO_DATABASE_MAX_CONNECTIONS", "too large"))?;

        let plc_directory_url = parse_base_url(
            "ATSSO_PLC_DIRECTORY_URL",
            &env("ATSSO_PLC_DIRECTORY_URL").or(file.plc_directory_url).unwrap_or_else(|| "https://plc.directory".into()),
        )?;
        let handle_resolver_url = env("ATSSO_HANDLE_RESOLVER_URL")
            .or(file.handle_resolver_url)
            .map(|text| parse_base_url("ATSSO_HANDLE_RESOLVER_URL", &text))
            .transpose()?;
        let allow_insecure_loopback_upstream = match env("ATSSO_ALLOW_INSECURE_LOOPBACK_UPSTREAM") {
            Some(text) => parse_bool("ATSSO_ALLOW_INSECURE_LOOPBACK_UPSTREAM", &text)?,
            None => file.allow_insecure_loopback_upstream.unwrap_or(false),
        };
        let upstream_scope = env("ATSSO_UPSTREAM_SCOPE").or(file.upstream_scope).unwrap_or_else(|| "atproto".into());
        if !upstream_scope.split(' ').any(|s| s == "atproto") {
            return Err(invalid("ATSSO_UPSTREAM_SCOPE", "must contain `atproto`"));
        }
        let email_trusted_issuers = match env("ATSSO_EMAIL_TRUSTED_ISSUERS") {
            Some(text) => text.split(',').map(str::trim).filter(|i| !i.is_empty()).map(String::from).collect(),
            None => file.email_trusted_issuers.unwrap_or_else(|| vec![crate::atproto::client::DEFAULT_EMAIL_TRUSTED_ISSUER.into()]),
        };
        let email_trusted_issuers = email_trusted_issuers
            .iter()
            .map(|i| Ok(parse_base_url("ATSSO_EMAIL_TRUSTED_ISSUERS", i)?.as_str().trim_end_matches('/').to_owned()))
            .collect::<Result<Vec<String>, ConfigError>>()?;

        let alg_text = env("ATSSO_ACCESS_TOKEN_ALG").or(file.access_token_alg).unwrap_or_else(|| "RS256".into());
        let access_token_alg = crate::crypto::signing::Alg::parse(&alg_text)
            .ok_or_else(|| invalid("ATSSO_ACCESS_TOKEN_ALG", format!("`{alg_text}` is not ES256 or RS256")))?;
        let admin_dids: Vec<String> = match env("ATSSO_ADMIN_DIDS") {
            Some(text) => text.split(',').map(str::trim).filter(|d| !d.is_empty()).map(String::from).collect(),
            None => file.admin_dids.unwrap_or_default(),
        };
        for did in &admin_dids {
            crate::atproto::syntax::validate_did(did).map_err(|e| invalid("ATSSO_ADMIN_DIDS", format!("`{did}` is not a DID: {e}")))?;
        }
        let dynamic_registration = match env("ATSSO_DYNAMIC_REGISTRATION") {
            Some(text) => parse_bool("ATSSO_DYNAMIC_REGISTRATION", &text)?,
            None => file.dynamic_registration.unwrap_or(false),
        };

        let trusted_proxies = match env("ATSSO_TRUSTED_PROXIES") {
            Some(text) => text.split(',').map(str::trim).filter(|t| !t.is_empty()).map(String::from).collect(),
            None => file.trusted_proxies.unwrap_or_default(),
        }
        .iter()
        .map(|text| parse_cidr(text))
        .collect::<Result<Vec<_>, _>>()?;
        let defaults = RateLimits::default();
        let limit = |name: &'static str, value: Option<u32>, default: u32| -> Result<u32, ConfigError> {
            match env(name) {
                Some(text) => text.parse::<u32>().map_err(|_| invalid(name, format!("`{text}` is not a count (0 turns the limit off)"))),
                None => Ok(value.unwrap_or(default)),
            }
        };
        let rate_limits = RateLimits {
            login: limit("ATSSO_RATE_LIMIT_LOGIN", file.rate_limit_login, defaults.login)?,
            authorize: limit("ATSSO_RATE_LIMIT_AUTHORIZE", file.rate_limit_authorize, defaults.authorize)?,
            registration: limit("ATSSO_RATE_LIMIT_REGISTRATION", file.rate_limit_registration, defaults.registration)?,
            client_auth_failures: limit(
                "ATSSO_RATE_LIMIT_CLIENT_AUTH_FAILURES",
                file.rate_limit_client_auth_failures,
                defaults.client_auth_failures,
            )?,
            admin_auth_failures: limit(
                "ATSSO_RATE_LIMIT_ADMIN_AUTH_FAILURES",
                file.rate_limit_admin_auth_failures,
                defaults.admin_auth_failures,
            )?,
            xrpc: limit("ATSSO_XRPC_RATE_PER_MINUTE", file.xrpc_rate_per_minute, defaults.xrpc)?,
        };
        let xrpc_max_body_bytes = number(
            "ATSSO_XRPC_MAX_BODY_BYTES",
            file.xrpc_max_body_bytes.and_then(|n| i64::try_from(n).ok()),
            DEFAULT_XRPC_MAX_BODY_BYTES as i64,
        )?;
        let xrpc_max_body_bytes = usize::try_from(xrpc_max_body_bytes).map_err(|_| invalid("ATSSO_XRPC_MAX_BODY_BYTES", "too large"))?;

        let metrics_bind = env("ATSSO_METRICS_BIND").or(file.metrics_bind);
        if let Some(text) = &metrics_bind {
            if text.parse::<std::net::SocketAddr>().is_err() {
                return Err(invalid("ATSSO_METRICS_BIND", format!("`{text}` is not an address:port")));
            }
        }
        let metrics_token = env("ATSSO_METRICS_TOKEN").map(Secret::new).or(file.metrics_token);
        if metrics_token.as_ref().is_some_and(|t| t.expose().len() < MIN_METRICS_TOKEN_LEN) {
            return Err(invalid("ATSSO_METRICS_TOKEN", format!("must be at least {MIN_METRICS_TOKEN_LEN} characters")));
        }

        Ok(Self {
            key_activation_delay_secs,
            metrics_bind,
            metrics_token,
            trusted_proxies,
            rate_limits,
            xrpc_max_body_bytes,
            access_token_alg,
            public_url,
            bind,
            database_url,
            data_dir,
            master_key,
            database_max_connections,
            access_token_ttl_secs,
            id_token_ttl_secs,
            refresh_token_ttl_secs,
            refresh_retry_window_secs,
            session_ttl_secs,
            plc_directory_url,
            handle_resolver_url,
            allow_insecure_loopback_upstream,
            upstream_scope,
            email_trusted_issuers,
            admin_dids,
            dynamic_registration,
        })
    }

    /// The issuer identifier: the public URL without a trailing slash.
    pub fn issuer(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_string()
    }

    /// An absolute URL under the public URL, e.g. `endpoint("/oauth2/token")`.
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.issuer(), path)
    }

    /// Cookies get `Secure` when we are served over https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// The longest-lived token we sign: retired keys stay published this long.
    pub fn max_signed_token_ttl_secs(&self) -> i64 {
        self.access_token_ttl_secs.max(self.id_token_ttl_secs)
    }

    // A rotated key is inserted at t and signs from t + delay. Every node reloads its key ring
    // within delay/4, so it publishes the key by t + delay/4; a JWKS copy cached just before
    // that lives at most delay/2 more. So by t + 3/4 delay every node and every JWKS cache that
    // honours max-age has seen the key: none of them can meet a token signed by a key it lacks.

    /// `Cache-Control: max-age` of our JWKS: min(300, delay/2).
    pub fn jwks_max_age_secs(&self) -> i64 {
        (self.key_activation_delay_secs / 2).min(300)
    }

    /// How often every node reloads its signing keys: min(60, delay/4), at least a second.
    pub fn key_reload_interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs((self.key_activation_delay_secs / 4).clamp(1, 60) as u64)
    }
}

fn parse_bool(setting: &'static str, text: &str) -> Result<bool, ConfigError> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(setting, format!("`{text}` is not true/false"))),
    }
}

/// A CIDR (`10.0.0.0/8`) or a single address (`10.0.0.7`).
fn parse_cidr(text: &str) -> Result<ipnet::IpNet, ConfigError> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| invalid("ATSSO_TRUSTED_PROXIES", format!("`{text}` is not an address or CIDR")))
}

fn parse_base_url(setting: &'static str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|e| invalid(setting, format!("`{text}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(setting, "must be an http(s) URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(setting, "must not have a query or fragment"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_sources(FileConfig::default(), move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_need_no_configuration() {
        let config = load(&[]).unwrap();
        assert_eq!(config.bind, "127.0.0.1:8080");
        assert_eq!(config.issuer(), "http://127.0.0.1:8080");
        assert!(config.database_url.starts_with("sqlite://./data/atsso.db"));
        assert!(!config.allow_insecure_loopback_upstream);
        assert!(!config.secure_cookies());
        assert!(config.admin_dids.is_empty());
        assert!(!config.dynamic_registration);
        assert_eq!(config.email_trusted_issuers, ["https://bsky.social"]);
    }

    #[test]
    fn the_key_activation_delay_bounds_jwks_caching_and_key_reloads() {
        let config = load(&[]).unwrap();
        assert_eq!(config.key_activation_delay_secs, 600);
        assert_eq!(config.jwks_max_age_secs(), 300);
        assert_eq!(config.key_reload_interval(), std::time::Duration::from_secs(60));
        let short = load(&[("ATSSO_KEY_ACTIVATION_DELAY_SECS", "120")]).unwrap();
        assert_eq!(short.jwks_max_age_secs(), 60);
        assert_eq!(short.key_reload_interval(), std::time::Duration::from_secs(30));
        let tiny = load(&[("ATSSO_KEY_ACTIVATION_DELAY_SECS", "2")]).unwrap();
        assert_eq!(tiny.jwks_max_age_secs(), 1);
        assert_eq!(tiny.key_reload_interval(), std::time::Duration::from_secs(1), "at least a second");
        assert_eq!(load(&[("ATSSO_KEY_ACTIVATION_DELAY_SECS", "0")]).unwrap_err().setting, "ATSSO_KEY_ACTIVATION_DELAY_SECS");
    }

    #[test]
    fn email_trusted_issuers_are_a_comma_separated_list_of_urls() {
        let config = load(&[("ATSSO_EMAIL_TRUSTED_ISSUERS", " https://bsky.social/ , https://Pds.Example.com,")]).unwrap();
        assert_eq!(config.email_trusted_issuers, ["https://bsky.social", "https://pds.example.com"]);
        let err = load(&[("ATSSO_EMAIL_TRUSTED_ISSUERS", "bsky.social")]).unwrap_err();
        assert_eq!(err.setting, "ATSSO_EMAIL_TRUSTED_ISSUERS");
        let file: FileConfig = toml::from_str("email_trusted_issuers = []").unwrap();
        assert!(Config::from_sources(file, |_| None).unwrap().email_trusted_issuers.is_empty(), "an empty list trusts none");
    }

    #[test]
    fn admin_dids_are_a_comma_separated_list() {
        let config = load(&[
            ("ATSSO_ADMIN_DIDS", " did:plc:aaaaaaaaaaaaaaaaaaaaaaaa , did:web:admin.example.com,"),
            ("ATSSO_DYNAMIC_REGISTRATION", "true"),
        ])
        .unwrap();
        assert_eq!(config.admin_dids, ["did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "did:web:admin.example.com"]);
        assert!(config.dynamic_registration);
    }

    #[test]
    fn access_tokens_are_rs256_unless_es256_is_chosen() {
        use crate::crypto::signing::Alg;
        assert_eq!(load(&[]).unwrap().access_token_alg, Alg::Rs256, "what RS256-only verifiers accept");
        assert_eq!(load(&[("ATSSO_ACCESS_TOKEN_ALG", "ES256")]).unwrap().access_token_alg, Alg::Es256);
    }

    #[test]
    fn bad_settings_are_named() {
        let err = load(&[("ATSSO_PUBLIC_URL", "not a url")]).unwrap_err();
        assert_eq!(err.setting, "ATSSO_PUBLIC_URL");
        let err = load(&[("ATSSO_BIND", "localhost")]).unwrap_err();
        assert_eq!(err.setting, "ATSSO_BIND");
        let err = load(&[("ATSSO_DATABASE_URL", "mysql://x")]).unwrap_err();
        assert_eq!(err.setting, "ATSSO_DATABASE_URL");
        let err = load(&[("ATSSO_REFRESH_RETRY_WINDOW_SECS", "61")]).unwrap_err();
        assert_eq!(err.setting, "ATSSO_REFRESH_RETRY_WINDOW_SECS");
        let err = load(&[("ATSSO_ACCESS_TOKEN_TTL_SECS", "-1")]).unwrap_err();
        assert_eq!(err.setting, "ATSSO_ACCESS_TOKEN_TTL_SECS");
        let err = load(&[("ATSSO_ACCESS_TOKEN_ALG", "HS256")]).unwrap_err();
        assert_eq!(err.setting, "ATSSO_ACCESS_TOKEN_ALG");
        let err = load(&[("ATSSO_UPSTREAM_SCOPE", "transition:email")]).unwrap_err();
        assert_eq!(err.setting, "ATSSO_UPSTREAM_SCOPE");
        let err = load(&[("ATSSO_ADMIN_DIDS", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa, alice.bsky.social")]).unwrap_err();
        assert_eq!(err.setting, "ATSSO_ADMIN_DIDS");
        assert!(err.problem.contains("alice.bsky.social"));
        let err = load(&[("ATSSO_DYNAMIC_REGISTRATION", "maybe")]).unwrap_err();
        assert_eq!(err.setting, "ATSSO_DYNAMIC_REGISTRATION");
    }

    #[test]
    fn xrpc_proxy_settings() {
        let config = load(&[]).unwrap();
        assert_eq!((config.rate_limits.xrpc, config.xrpc_max_body_bytes), (300, DEFAULT_XRPC_MAX_BODY_BYTES));
        let config = load(&[("ATSSO_XRPC_RATE_PER_MINUTE", "0"), ("ATSSO_XRPC_MAX_BODY_BYTES", "1024")]).unwrap();
        assert_eq!((config.rate_limits.xrpc, config.xrpc_max_body_bytes), (0, 1024));
        assert_eq!(load(&[("ATSSO_XRPC_MAX_BODY_BYTES", "0")]).unwrap_err().setting, "ATSSO_XRPC_MAX_BODY_BYTES");
        assert_eq!(load(&[("ATSSO_XRPC_RATE_PER_MINUTE", "many")]).unwrap_err().setting, "ATSSO_XRPC_RATE_PER_MINUTE");
    }

    #[test]
    fn trusted_proxies_and_rate_limits() {
        let config = load(&[]).unwrap();
        assert!(config.trusted_proxies.is_empty());
        assert_eq!(config.rate_limits, RateLimits::default());
        let config = load(&[
            ("ATSSO_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1 ,::1"),
            ("ATSSO_RATE_LIMIT_LOGIN", "0"),
            ("ATSSO_RATE_LIMIT_CLIENT_AUTH_FAILURES", "3"),
        ])
        .unwrap();
        assert_eq!(config.trusted_proxies.len(), 3);
        assert!(config.trusted_proxies[1].contains(&"127.0.0.1".parse::<std::net::IpAddr>().unwrap()));
        assert_eq!(config.rate_limits.login, 0);
        assert_eq!(config.rate_limits.client_auth_failures, 3);
        assert_eq!(load(&[("ATSSO_TRUSTED_PROXIES", "10.0.0.0/33")]).unwrap_err().setting, "ATSSO_TRUSTED_PROXIES");
        assert_eq!(load(&[("ATSSO_RATE_LIMIT_LOGIN", "-1")]).unwrap_err().setting, "ATSSO_RATE_LIMIT_LOGIN");
    }

    #[test]
    fn toml_rejects_unknown_keys() {
        assert!(toml::from_str::<FileConfig>("public_url = \"https://sso.example\"\nbogus = 1").is_err());
        let file: FileConfig = toml::from_str("public_url = \"https://sso.example/\"").unwrap();
        let config = Config::from_sources(file, |_| None).unwrap();
        assert_eq!(config.issuer(), "https://sso.example");
        assert!(config.secure_cookies());
    }

    #[test]
    fn metrics_settings() {
        let config = load(&[]).unwrap();
        assert!(!config.metrics_enabled(), "metrics are never public by default");
        let config = load(&[("ATSSO_METRICS_BIND", "127.0.0.1:9464"), ("ATSSO_METRICS_TOKEN", "0123456789abcdef")]).unwrap();
        assert!(config.metrics_enabled());
        assert_eq!(config.metrics_bind.as_deref(), Some("127.0.0.1:9464"));
        assert!(!format!("{config:?}").contains("0123456789abcdef"));
        assert_eq!(load(&[("ATSSO_METRICS_BIND", "localhost")]).unwrap_err().setting, "ATSSO_METRICS_BIND");
        assert_eq!(load(&[("ATSSO_METRICS_TOKEN", "short")]).unwrap_err().setting, "ATSSO_METRICS_TOKEN");
    }

    #[test]
    fn log_format_is_text_or_json() {
        assert_eq!(LogFormat::parse(None).unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some("JSON")).unwrap(), LogFormat::Json);
        assert_eq!(LogFormat::parse(Some("text")).unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse(Some("yaml")).unwrap_err().setting, "ATSSO_LOG_FORMAT");
    }

    /// Switches read only by the test suites (README's test section names them): not settings.
    const TEST_SWITCHES: &[&str] = &["ATSSO_E2E", "ATSSO_CLUSTER", "ATSSO_SKIP_E2E", "ATSSO_SCREENSHOT_DIR", "ATSSO_TEST_DATABASE_URL"];

    fn setting_names(text: &str) -> std::collections::BTreeSet<String> {
        regex::Regex::new(r"ATSSO_[A-Z0-9_]+").unwrap().find_iter(text).map(|m| m.as_str().to_owned()).collect()
    }

    /// Every `"ATSSO_…"` literal read in this file (outside the list itself and the tests) is a
    /// known setting.
    #[test]
    fn every_setting_read_here_is_listed() {
        let source = include_str!("config.rs");
        let code = source.split("#[cfg(test)]").next().unwrap();
        let (before, rest) = code.split_once("pub const SETTINGS").unwrap();
        let (_, after) = rest.split_once("];").unwrap();
        let code = format!("{before}{after}");
        let read = regex::Regex::new(r#""(ATSSO_[A-Z0-9_]+)""#).unwrap();
        let names: Vec<&str> = read.captures_iter(&code).map(|c| c.get(1).unwrap().as_str()).collect();
        assert!(names.len() > 20, "the scan found the settings read here: {names:?}");
        let unknown: Vec<&&str> = names.iter().filter(|n| !SETTINGS.contains(n)).collect();
        assert!(unknown.is_empty(), "settings read in config.rs but missing from SETTINGS: {unknown:?}");
    }

    /// docker-compose.yml and README.md name only settings that exist.
    #[test]
    fn compose_and_readme_name_only_known_settings() {
        for (file, text) in [("docker-compose.yml", include_str!("../docker-compose.yml")), ("README.md", include_str!("../README.md"))] {
            let unknown: Vec<String> = setting_names(text)
                .into_iter()
                .filter(|n| !SETTINGS.contains(&n.as_str()) && !TEST_SWITCHES.contains(&n.as_str()))
                .collect();
            assert!(unknown.is_empty(), "{file} names unknown settings: {unknown:?}");
        }
        assert!(setting_names(include_str!("../docker-compose.yml")).contains("ATSSO_MASTER_KEY"));
    }

    #[test]
    fn secrets_do_not_print() {
        let config = load(&[("ATSSO_MASTER_KEY", "c2VjcmV0")]).unwrap();
        assert!(!format!("{config:?}").contains("c2VjcmV0"));
    }
}
