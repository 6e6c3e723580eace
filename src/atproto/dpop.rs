//! DPoP proofs (RFC 9449) with ES256 keys, the per-origin server nonce cache, and the
//! RFC 7638 JWK thumbprint.

use std::time::Duration;

use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{JwsHeader, ES256};
use josekit::jwt::{self, JwtPayload};
use serde_json::Value;
use url::Url;

use super::error::AtprotoError;
use super::urls::origin_string;
use crate::crypto::{random_token, sha256_b64};

/// RFC 7638 JWK thumbprint (SHA-256, base64url) of the public part of an EC, RSA or OKP key.
pub fn jwk_thumbprint(jwk: &Jwk) -> Result<String, AtprotoError> {
    let members: &[&str] = match jwk.key_type() {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        "oct" => &["k", "kty"],
        other => return Err(AtprotoError::Crypto(format!("no thumbprint for kty {other}"))),
    };
    // Required members only, in lexicographic order, no whitespace (serde_json's map is
    // ordered when we build it in order, and string escaping follows JSON rules).
    let mut out = String::from("{");
    for (i, name) in members.iter().enumerate() {
        let value = match jwk.parameter(name) {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(AtprotoError::Crypto(format!("JWK lacks member {name}"))),
        };
        if i > 0 {
            out.push(',');
        }
        let k = serde_json::to_string(name).map_err(|e| AtprotoError::Crypto(e.to_string()))?;
        let v = serde_json::to_string(&value).map_err(|e| AtprotoError::Crypto(e.to_string()))?;
        out.push_str(&k);
        out.push(':');
        out.push_str(&v);
    }
    out.push('}');
    Ok(sha256_b64(&out))
}

/// `htu` for a URL: scheme, host, port and path; no query, no fragment.
pub fn htu(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// An ES256 key pair bound to one login / upstream session.
#[derive(Clone)]
pub struct DpopKey {
    key_pair: EcKeyPair,
    public_jwk: Jwk,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey").finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A fresh P-256 key.
    pub fn generate() -> Result<Self, AtprotoError> {
        let key_pair = EcKeyPair::generate(EcCurve::P256).map_err(|e| AtprotoError::Crypto(format!("DPoP key generation: {e}")))?;
        Ok(Self::from_key_pair(key_pair))
    }

    fn from_key_pair(key_pair: EcKeyPair) -> Self {
        let mut public_jwk = key_pair.to_jwk_public_key();
        // The proof header carries the bare public key.
        public_jwk.set_algorithm("ES256");
        Self { key_pair, public_jwk }
    }

    /// Restore from the private JWK JSON produced by [`DpopKey::to_private_jwk_json`].
    pub fn from_private_jwk_json(json: &str) -> Result<Self, AtprotoError> {
        let jwk = Jwk::from_bytes(json.as_bytes()).map_err(|e| AtprotoError::Crypto(format!("bad DPoP JWK: {e}")))?;
        let key_pair = EcKeyPair::from_jwk(&jwk).map_err(|e| AtprotoError::Crypto(format!("bad DPoP JWK: {e}")))?;
        if key_pair.curve() != EcCurve::P256 {
            return Err(AtprotoError::Crypto("DPoP key must be P-256".into()));
        }
        Ok(Self::from_key_pair(key_pair))
    }

    /// Private JWK as a JSON string, for the caller to store sealed. Secret material.
    pub fn to_private_jwk_json(&self) -> String {
        self.key_pair.to_jwk_key_pair().to_string()
    }

    pub fn public_jwk(&self) -> &Jwk {
        &self.public_jwk
    }

    /// RFC 7638 thumbprint of the public key (`jkt`).
    pub fn thumbprint(&self) -> Result<String, AtprotoError> {
        jwk_thumbprint(&self.public_jwk)
    }

    /// A DPoP proof for one request. `access_token` adds `ath`.
    pub fn proof(&self, htm: &str, url: &Url, nonce: Option<&str>, access_token: Option<&str>) -> Result<String, AtprotoError> {
        let mut header = JwsHeader::new();
        header.set_token_type("dpop+jwt");
        header.set_algorithm("ES256");
        header.set_jwk(self.public_jwk.clone());
        let mut payload = JwtPayload::new();
        payload.set_jwt_id(random_token(16));
        let claim = |p: &mut JwtPayload, k: &str, v: Value| {
            p.set_claim(k, Some(v)).map_err(|e| AtprotoError::Crypto(format!("DPoP claim {k}: {e}")))
        };
        claim(&mut payload, "htm", Value::String(htm.to_string()))?;
        claim(&mut payload, "htu", Value::String(htu(url)))?;
        claim(&mut payload, "iat", Value::from(crate::clock::now()))?;
        if let Some(n) = nonce {
            claim(&mut payload, "nonce", Value::String(n.to_string()))?;
        }
        if let Some(t) = access_token {
            claim(&mut payload, "ath", Value::String(sha256_b64(t)))?;
        }
        let signer =
            ES256.signer_from_jwk(&self.key_pair.to_jwk_private_key()).map_err(|e| AtprotoError::Crypto(format!("DPoP signer: {e}")))?;
        jwt::encode_with_signer(&payload, &header, &signer).map_err(|e| AtprotoError::Crypto(format!("DPoP signing: {e}")))
    }
}

/// Most origins whose nonce is remembered. Origins are chosen by whoever logs in (each names
/// its own PDS and authorization server), so the cache is bounded; a busy origin's nonce stays.
pub const NONCE_CACHE_CAPACITY: u64 = 4096;
/// A nonce not used for this long is forgotten (servers rotate theirs within minutes anyway).
pub const NONCE_CACHE_IDLE: Duration = Duration::from_secs(600);
/// Longest `DPoP-Nonce` we keep.
pub const MAX_NONCE_LEN: usize = 512;

/// Server-provided DPoP nonces, per origin. Shared by every login of one client. Bounded in
/// entries ([`NONCE_CACHE_CAPACITY`], least-used first out) and in idle time.
pub struct NonceCache {
    nonces: moka::sync::Cache<String, String>,
}

impl Default for NonceCache {
    fn default() -> Self {
        Self { nonces: moka::sync::Cache::builder().max_capacity(NONCE_CACHE_CAPACITY).time_to_idle(NONCE_CACHE_IDLE).build() }
    }
}

impl std::fmt::Debug for NonceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceCache").field("entries", &self.nonces.entry_count()).finish()
    }
}

/// A nonce worth keeping: non-empty, bounded, and usable as a JWT string claim.
pub fn usable_nonce(nonce: Option<&str>) -> Option<&str> {
    nonce.filter(|n| !n.is_empty() && n.len() <= MAX_NONCE_LEN)
}

impl NonceCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, url: &Url) -> Option<String> {
        self.nonces.get(&origin_string(url))
    }

    /// How many origins are remembered (after pending evictions have run).
    pub fn entry_count(&self) -> u64 {
        self.nonces.run_pending_tasks();
        self.nonces.entry_count()
    }

    /// Remember the `DPoP-Nonce` of a response, if any. Returns true when one was present.
    pub fn update(&self, url: &Url, nonce: Option<&str>) -> bool {
        match usable_nonce(nonce) {
            Some(n) => {
                self.nonces.insert(origin_string(url), n.to_string());
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1
        let jwk = Jwk::from_bytes(
            br#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#,
        )
        .unwrap();
        assert_eq!(jwk_thumbprint(&jwk).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn thumbprint_ignores_optional_members() {
        let key = DpopKey::generate().unwrap();
        let mut with_extras = key.public_jwk().clone();
        with_extras.set_key_id("abc");
        assert_eq!(jwk_thumbprint(&with_extras).unwrap(), key.thumbprint().unwrap());
    }

    #[test]
    fn proof_has_required_claims_and_verifies() {
        let key = DpopKey::generate().unwrap();
        let url = Url::parse("https://pds.example.com/xrpc/foo?x=1#frag").unwrap();
        let proof = key.proof("GET", &url, Some("n-1"), Some("tok")).unwrap();
        let verifier = ES256.verifier_from_jwk(key.public_jwk()).unwrap();
        let (payload, header) = jwt::decode_with_verifier(&proof, &verifier).unwrap();
        assert_eq!(header.token_type(), Some("dpop+jwt"));
        assert_eq!(header.algorithm(), Some("ES256"));
        let hjwk = header.jwk().unwrap();
        assert!(hjwk.parameter("d").is_none(), "private key leaked into header");
        assert_eq!(payload.claim("htm").unwrap(), "GET");
        assert_eq!(payload.claim("htu").unwrap(), "https://pds.example.com/xrpc/foo");
        assert_eq!(payload.claim("nonce").unwrap(), "n-1");
        assert_eq!(payload.claim("ath").unwrap().as_str().unwrap(), sha256_b64("tok"));
        assert!(payload.jwt_id().unwrap().len() >= 16);
        let other = key.proof("GET", &url, None, None).unwrap();
        let (p2, _) = jwt::decode_with_verifier(&other, &verifier).unwrap();
        assert_ne!(p2.jwt_id(), payload.jwt_id());
        assert!(p2.claim("nonce").is_none() && p2.claim("ath").is_none());
    }

    #[test]
    fn private_jwk_round_trips() {
        let key = DpopKey::generate().unwrap();
        let json = key.to_private_jwk_json();
        assert!(json.contains("\"d\""));
        let back = DpopKey::from_private_jwk_json(&json).unwrap();
        assert_eq!(back.thumbprint().unwrap(), key.thumbprint().unwrap());
        assert!(DpopKey::from_private_jwk_json("{}").is_err());
    }

    #[test]
    fn nonce_cache_stays_bounded() {
        // Every login names its own PDS, so origins are chosen by whoever logs in.
        let c = NonceCache::new();
        let total = NONCE_CACHE_CAPACITY * 3;
        for i in 0..total {
            let url = Url::parse(&format!("https://pds{i}.attacker.example/xrpc/x")).unwrap();
            assert!(c.update(&url, Some("n")));
        }
        assert!(c.entry_count() <= NONCE_CACHE_CAPACITY, "{} origins remembered", c.entry_count());
        // A busy origin (used between the floods) keeps its nonce.
        let busy = Url::parse("https://bsky.social/oauth/token").unwrap();
        for round in 0..20 {
            c.update(&busy, Some(&format!("fresh-{round}")));
            for _ in 0..5 {
                assert!(c.get(&busy).is_some() || round == 0);
            }
            for i in 0..NONCE_CACHE_CAPACITY / 4 {
                c.update(&Url::parse(&format!("https://r{round}-{i}.attacker.example/")).unwrap(), Some("n"));
            }
        }
        assert!(c.entry_count() <= NONCE_CACHE_CAPACITY);
        assert_eq!(c.get(&busy).as_deref(), Some("fresh-19"));
        // Oversized or empty nonces are not kept.
        assert!(!c.update(&busy, Some(&"x".repeat(MAX_NONCE_LEN + 1))));
        assert!(!c.update(&busy, Some("")));
    }

    #[test]
    fn nonce_cache_is_per_origin() {
        let c = NonceCache::new();
        let a = Url::parse("https://a.example/x").unwrap();
        let a2 = Url::parse("https://a.example/y?z").unwrap();
        let b = Url::parse("https://b.example/x").unwrap();
        assert!(c.update(&a, Some("n1")));
        assert!(!c.update(&a, None));
        assert_eq!(c.get(&a2).as_deref(), Some("n1"));
        assert_eq!(c.get(&b), None);
    }
}
