//! Settings, read from the environment (see the README).
use std::fmt;

use openidconnect::url::Url;

/// Everything the app needs to know. `Debug` never prints the client secret.
#[derive(Clone)]
pub struct Settings {
    /// Shown on every page ("Notes", "Photos").
    pub app_name: String,
    /// Listen address.
    pub bind: String,
    /// The app's public base URL, without a trailing slash; the redirect URIs derive from it.
    pub app_url: String,
    /// atsso's public URL (its OIDC issuer).
    pub issuer: String,
    pub client_id: String,
    /// Unset for a public client (`atsso clients add --public`).
    pub client_secret: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct SettingsError(pub String);

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("app_name", &self.app_name)
            .field("bind", &self.bind)
            .field("app_url", &self.app_url)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Settings {
    /// Reads `APP_NAME`, `APP_BIND`, `APP_URL`, `ISSUER`, `CLIENT_ID` and `CLIENT_SECRET`.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like `from_env`, with any source of variables (tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let settings = Settings {
            app_name: get("APP_NAME").unwrap_or_else(|| "Tenant app".into()),
            bind: get("APP_BIND").unwrap_or_else(|| "127.0.0.1:3000".into()),
            app_url: base_url("APP_URL", get("APP_URL").unwrap_or_else(|| "http://127.0.0.1:3000".into()))?,
            issuer: base_url("ISSUER", get("ISSUER").unwrap_or_else(|| "http://127.0.0.1:8080".into()))?,
            client_id: get("CLIENT_ID").ok_or_else(|| {
                SettingsError("CLIENT_ID is not set: register the app with `atsso clients add ... --json` and pass its client_id".into())
            })?,
            client_secret: get("CLIENT_SECRET"),
        };
        Ok(settings)
    }

    pub fn redirect_uri(&self) -> String {
        format!("{}/callback", self.app_url)
    }

    /// Where atsso sends the browser back after signing out.
    pub fn post_logout_redirect_uri(&self) -> String {
        format!("{}/", self.app_url)
    }

    /// Cookies ignore ports, so two apps on 127.0.0.1 need different cookie names.
    pub fn cookie_name(&self) -> String {
        let port = Url::parse(&self.app_url).ok().and_then(|u| u.port_or_known_default()).unwrap_or(0);
        format!("tenant_app_{port}")
    }

    pub fn secure_cookies(&self) -> bool {
        self.app_url.starts_with("https://")
    }
}

/// An absolute http(s) URL without a trailing slash.
fn base_url(name: &str, value: String) -> Result<String, SettingsError> {
    match Url::parse(&value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Ok(value.trim_end_matches('/').to_owned())
        }
        _ => Err(SettingsError(format!("{name} must be an absolute http(s) URL, got {value:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned()))
    }

    #[test]
    fn defaults_and_derived_values() {
        let s = settings(&[("CLIENT_ID", "abc")]).unwrap();
        assert_eq!(s.bind, "127.0.0.1:3000");
        assert_eq!(s.issuer, "http://127.0.0.1:8080");
        assert_eq!(s.redirect_uri(), "http://127.0.0.1:3000/callback");
        assert_eq!(s.post_logout_redirect_uri(), "http://127.0.0.1:3000/");
        assert_eq!(s.cookie_name(), "tenant_app_3000");
        assert!(s.client_secret.is_none());
    }

    #[test]
    fn trailing_slashes_are_dropped_and_bad_urls_refused() {
        let s = settings(&[("CLIENT_ID", "abc"), ("APP_URL", "http://127.0.0.1:3001/")]).unwrap();
        assert_eq!(s.redirect_uri(), "http://127.0.0.1:3001/callback");
        assert!(settings(&[("CLIENT_ID", "abc"), ("ISSUER", "127.0.0.1:8080")]).is_err());
        assert!(settings(&[]).is_err());
    }

    #[test]
    fn debug_hides_the_secret() {
        let s = settings(&[("CLIENT_ID", "abc"), ("CLIENT_SECRET", "hunter2")]).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
