//! Our ES256 client authentication key and the `private_key_jwt` client assertion.

use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{JwsHeader, ES256};
use josekit::jwt::{self, JwtPayload};
use serde_json::Value;

use crate::atproto::error::AtprotoError;
use crate::crypto::random_token;

/// Our ES256 client authentication key (`private_key_jwt`), with its `kid`.
#[derive(Clone)]
pub struct ClientSigningKey {
    kid: String,
    key_pair: EcKeyPair,
}

impl std::fmt::Debug for ClientSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl ClientSigningKey {
    /// A new random P-256 key.
    pub fn generate(kid: impl Into<String>) -> Result<Self, AtprotoError> {
        let key_pair = EcKeyPair::generate(EcCurve::P256).map_err(|e| AtprotoError::Crypto(format!("client key generation: {e}")))?;
        Ok(Self { kid: kid.into(), key_pair })
    }

    /// From a PEM EC private key (PKCS#8 or SEC1), P-256 only.
    pub fn from_pem(pem: &str, kid: impl Into<String>) -> Result<Self, AtprotoError> {
        let key_pair = EcKeyPair::from_pem(pem.as_bytes(), Some(EcCurve::P256))
            .map_err(|e| AtprotoError::Config(format!("bad client key PEM: {e}")))?;
        Ok(Self { kid: kid.into(), key_pair })
    }

    /// From a private JWK (JSON). `kid` overrides the JWK's own `kid`; one of them is required.
    pub fn from_jwk_json(json: &str, kid: Option<String>) -> Result<Self, AtprotoError> {
        let jwk = Jwk::from_bytes(json.as_bytes()).map_err(|e| AtprotoError::Config(format!("bad client key JWK: {e}")))?;
        let kid = kid.or_else(|| jwk.key_id().map(str::to_string)).ok_or_else(|| AtprotoError::Config("client key has no kid".into()))?;
        let key_pair = EcKeyPair::from_jwk(&jwk).map_err(|e| AtprotoError::Config(format!("bad client key JWK: {e}")))?;
        if key_pair.curve() != EcCurve::P256 {
            return Err(AtprotoError::Config("client key must be P-256".into()));
        }
        Ok(Self { kid, key_pair })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Private key as PKCS#8 PEM, for storing sealed. Secret material.
    pub fn to_pem(&self) -> String {
        String::from_utf8_lossy(&self.key_pair.to_pem_private_key()).into_owned()
    }

    /// Public JWK with `kid`, `alg: ES256`, `use: sig`.
    pub fn public_jwk(&self) -> Jwk {
        let mut jwk = self.key_pair.to_jwk_public_key();
        jwk.set_key_id(self.kid.clone());
        jwk.set_algorithm("ES256");
        jwk.set_key_use("sig");
        jwk
    }

    /// A client assertion (RFC 7523) for `audience` (the AS issuer), valid 60 s, fresh `jti`.
    pub(super) fn assertion(&self, client_id: &str, audience: &str) -> Result<String, AtprotoError> {
        let mut header = JwsHeader::new();
        header.set_algorithm("ES256");
        header.set_key_id(self.kid.clone());
        let mut payload = JwtPayload::new();
        payload.set_issuer(client_id);
        payload.set_subject(client_id);
        payload.set_audience(vec![audience.to_string()]);
        payload.set_jwt_id(random_token(16));
        let now = crate::clock::now();
        let set = |p: &mut JwtPayload, k: &str, v: i64| {
            p.set_claim(k, Some(Value::from(v))).map_err(|e| AtprotoError::Crypto(format!("client assertion {k}: {e}")))
        };
        set(&mut payload, "iat", now)?;
        set(&mut payload, "exp", now + 60)?;
        let signer =
            ES256.signer_from_jwk(&self.key_pair.to_jwk_private_key()).map_err(|e| AtprotoError::Crypto(format!("client signer: {e}")))?;
        jwt::encode_with_signer(&payload, &header, &signer).map_err(|e| AtprotoError::Crypto(format!("client assertion signing: {e}")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn client_key_from_pem_and_jwk() {
        let k = ClientSigningKey::generate("a").unwrap();
        let pem = k.to_pem();
        let k2 = ClientSigningKey::from_pem(&pem, "a").unwrap();
        assert_eq!(k.public_jwk().to_string(), k2.public_jwk().to_string());
        let mut priv_jwk = k.key_pair.to_jwk_private_key();
        priv_jwk.set_key_id("from-jwk");
        let k3 = ClientSigningKey::from_jwk_json(&priv_jwk.to_string(), None).unwrap();
        assert_eq!(k3.kid(), "from-jwk");
        assert!(format!("{k3:?}").contains("from-jwk"));
        assert!(!format!("{k3:?}").contains("\"d\""));
    }
}
