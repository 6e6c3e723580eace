//! How we present ourselves: `client_id`, `redirect_uri`, and the documents served at
//! `/atproto/client-metadata.json` and `/atproto/jwks.json`.

use serde_json::{json, Value};

use super::{AtprotoClient, ClientMode};

impl AtprotoClient {
    /// Our `client_id` (for the configured scope).
    pub fn client_id(&self) -> String {
        self.client_id_for(&self.config.scope)
    }

    /// Our `client_id` for a login asking for `scope`. The loopback development client has no
    /// metadata document: its `client_id` itself declares the scope, so it differs per scope
    /// (and a grant's token requests must use the `client_id` it was obtained with).
    pub fn client_id_for(&self, scope: &str) -> String {
        match self.config.mode {
            ClientMode::Confidential => format!("{}/atproto/client-metadata.json", self.base()),
            ClientMode::Loopback => {
                let q = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("redirect_uri", &self.redirect_uri())
                    .append_pair("scope", scope)
                    .finish()
                    .replace('+', "%20");
                format!("http://localhost?{q}")
            }
        }
    }

    /// Our callback URL (loopback mode: host `127.0.0.1`, as the PDS requires).
    pub fn redirect_uri(&self) -> String {
        match self.config.mode {
            ClientMode::Confidential => format!("{}/atproto/callback", self.base()),
            ClientMode::Loopback => {
                let mut u = self.config.public_url.clone();
                if u.host_str() == Some("localhost") {
                    // set_host only fails for cannot-be-a-base URLs, which http URLs are not.
                    let _ = u.set_host(Some("127.0.0.1"));
                }
                format!("{}/atproto/callback", u.as_str().trim_end_matches('/'))
            }
        }
    }

    /// The configured scope plus `permissions` (canonical atproto permissions, e.g. what tenant
    /// apps may ask for), without repeats.
    pub fn scope_with(&self, permissions: &[String]) -> String {
        let mut words: Vec<&str> = Vec::new();
        for word in self.config.scope.split_whitespace().chain(permissions.iter().map(String::as_str)) {
            if !words.contains(&word) {
                words.push(word);
            }
        }
        words.join(" ")
    }

    /// The document served at `/atproto/client-metadata.json`. Its `scope` must declare every
    /// scope a login may ask for (the PDS refuses others at PAR): the configured scope plus
    /// `permissions`, the union of what tenant apps may ask for.
    pub fn client_metadata_document(&self, permissions: &[String]) -> Value {
        let mut doc = json!({
            "client_id": self.client_id(),
            "client_name": self.config.client_name,
            "client_uri": self.base(),
            "application_type": "web",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "redirect_uris": [self.redirect_uri()],
            "scope": self.scope_with(permissions),
            "dpop_bound_access_tokens": true,
        });
        if let Some(obj) = doc.as_object_mut() {
            match self.config.mode {
                ClientMode::Confidential => {
                    obj.insert("token_endpoint_auth_method".into(), json!("private_key_jwt"));
                    obj.insert("token_endpoint_auth_signing_alg".into(), json!("ES256"));
                    obj.insert("jwks_uri".into(), json!(format!("{}/atproto/jwks.json", self.base())));
                }
                ClientMode::Loopback => {
                    obj.insert("token_endpoint_auth_method".into(), json!("none"));
                }
            }
        }
        doc
    }

    /// The document served at `/atproto/jwks.json` (public key only).
    pub fn client_jwks(&self) -> Value {
        let keys: Vec<Value> = self.client_key.iter().filter_map(|k| serde_json::to_value(k.public_jwk().as_ref()).ok()).collect();
        json!({ "keys": keys })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::super::tests::client;
    use super::*;
    use url::Url;

    #[test]
    fn confidential_ids() {
        let c = client("https://sso.example.com/", ClientMode::Confidential);
        assert_eq!(c.client_id(), "https://sso.example.com/atproto/client-metadata.json");
        assert_eq!(c.redirect_uri(), "https://sso.example.com/atproto/callback");
        let doc = c.client_metadata_document(&["repo:com.example.note".into(), "atproto".into()]);
        assert_eq!(doc["client_id"], c.client_id());
        assert_eq!(
            doc["scope"], "atproto transition:generic repo:com.example.note",
            "the configured scope plus what apps may ask for, no repeats"
        );
        assert_eq!(doc["token_endpoint_auth_method"], "private_key_jwt");
        assert_eq!(doc["token_endpoint_auth_signing_alg"], "ES256");
        assert_eq!(doc["jwks_uri"], "https://sso.example.com/atproto/jwks.json");
        assert_eq!(doc["dpop_bound_access_tokens"], true);
        assert_eq!(doc["redirect_uris"][0], "https://sso.example.com/atproto/callback");
        let jwks = c.client_jwks();
        let k = &jwks["keys"][0];
        assert_eq!(k["kid"], "k1");
        assert_eq!(k["alg"], "ES256");
        assert_eq!(k["use"], "sig");
        assert!(k.get("d").is_none(), "private key in JWKS");
    }

    #[test]
    fn loopback_ids() {
        let c = client("http://localhost:8080", ClientMode::Loopback);
        assert_eq!(c.redirect_uri(), "http://127.0.0.1:8080/atproto/callback");
        assert_eq!(
            c.client_id(),
            "http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Fatproto%2Fcallback&scope=atproto%20transition%3Ageneric"
        );
        let parsed = Url::parse(&c.client_id()).unwrap();
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        assert_eq!(pairs[0].1, "http://127.0.0.1:8080/atproto/callback");
        assert_eq!(pairs[1].1, "atproto transition:generic");
    }
}
