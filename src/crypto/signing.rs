//! RS256 signing keys for ID tokens, access tokens and logout tokens (josekit/OpenSSL).
//! The newest unretired key signs; retired keys stay published until their tokens expire.
use std::{collections::HashMap, sync::Arc};

use josekit::{
    jwk::{Jwk, KeyPair},
    jws::{alg::rsassa::RsassaJwsSigner, alg::rsassa::RsassaJwsVerifier, JwsHeader, JwsVerifier, RS256},
    jwt::{self, JwtPayload},
};
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("no active signing key")]
    NoActiveKey,
    #[error("signing key: {0}")]
    Key(String),
    #[error("token is not a valid JWT signed by us")]
    Invalid,
}

/// A freshly generated key, PKCS#8 PEM, to be sealed and stored.
pub struct NewKey {
    pub kid: String,
    pub private_pem: String,
}

pub fn generate_key() -> Result<NewKey, SigningError> {
    let key_pair = RS256.generate_key_pair(2048).map_err(|e| SigningError::Key(e.to_string()))?;
    let private_pem = String::from_utf8(key_pair.to_pem_private_key()).map_err(|e| SigningError::Key(e.to_string()))?;
    Ok(NewKey { kid: super::random_token(12), private_pem })
}

/// One stored key as loaded from the database (PEM already unsealed).
pub struct StoredKey {
    pub kid: String,
    pub private_pem: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

struct ActiveKey {
    kid: String,
    signer: RsassaJwsSigner,
}

/// The keys in use: one signer, every published verifier, and the JWKS document pre-rendered.
pub struct KeySet {
    active: ActiveKey,
    verifiers: HashMap<String, RsassaJwsVerifier>,
    jwks_json: Arc<str>,
}

impl KeySet {
    /// `keys` are every key whose public half must still be published; the newest unretired
    /// one becomes the signer.
    pub fn new(mut keys: Vec<StoredKey>) -> Result<Self, SigningError> {
        keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
        let mut active = None;
        let mut verifiers = HashMap::new();
        let mut jwks = Vec::new();
        for key in &keys {
            let key_pair = RS256.key_pair_from_pem(&key.private_pem).map_err(|e| SigningError::Key(e.to_string()))?;
            let mut jwk: Jwk = key_pair.to_jwk_public_key();
            jwk.set_key_id(&key.kid);
            jwk.set_key_use("sig");
            jwk.set_algorithm("RS256");
            let verifier = RS256.verifier_from_jwk(&jwk).map_err(|e| SigningError::Key(e.to_string()))?;
            verifiers.insert(key.kid.clone(), verifier);
            jwks.push(Value::Object(jwk.as_ref().clone()));
            if active.is_none() && key.retired_at.is_none() {
                let mut signer = RS256.signer_from_pem(&key.private_pem).map_err(|e| SigningError::Key(e.to_string()))?;
                signer.set_key_id(&key.kid);
                active = Some(ActiveKey { kid: key.kid.clone(), signer });
            }
        }
        let active = active.ok_or(SigningError::NoActiveKey)?;
        let jwks_json: Arc<str> = serde_json::json!({ "keys": jwks }).to_string().into();
        Ok(Self { active, verifiers, jwks_json })
    }

    pub fn active_kid(&self) -> &str {
        &self.active.kid
    }

    pub fn jwks_json(&self) -> Arc<str> {
        self.jwks_json.clone()
    }

    /// Signs `claims` as a JWT with header `typ` and our active `kid`.
    pub fn sign(&self, typ: &str, claims: Map<String, Value>) -> Result<String, SigningError> {
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id(&self.active.kid);
        let payload = JwtPayload::from_map(claims).map_err(|e| SigningError::Key(e.to_string()))?;
        jwt::encode_with_signer(&payload, &header, &self.active.signer).map_err(|e| SigningError::Key(e.to_string()))
    }

    /// Verifies the signature (any published key, by `kid`) and the header `typ`; returns claims.
    /// Expiry and audience are the caller's to check.
    pub fn verify(&self, token: &str, expected_typ: Option<&str>) -> Result<Map<String, Value>, SigningError> {
        let (payload, header) = jwt::decode_with_verifier_selector(token, |header| {
            let verifier = header
                .key_id()
                .and_then(|kid| self.verifiers.get(kid))
                .map(|v| v as &dyn JwsVerifier);
            Ok(verifier)
        })
        .map_err(|_| SigningError::Invalid)?;
        if let Some(typ) = expected_typ {
            let matches = header.token_type().is_some_and(|t| t.eq_ignore_ascii_case(typ));
            if !matches {
                return Err(SigningError::Invalid);
            }
        }
        Ok(payload.as_ref().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(key: &NewKey, created_at: i64, retired_at: Option<i64>) -> StoredKey {
        StoredKey { kid: key.kid.clone(), private_pem: key.private_pem.clone(), created_at, retired_at }
    }

    #[test]
    fn sign_verify_and_rotation_overlap() {
        let old = generate_key().unwrap();
        let set = KeySet::new(vec![stored(&old, 1, None)]).unwrap();
        let mut claims = Map::new();
        claims.insert("sub".into(), "did:plc:abc".into());
        let token = set.sign("at+jwt", claims).unwrap();
        assert_eq!(set.verify(&token, Some("at+jwt")).unwrap()["sub"], "did:plc:abc");
        assert!(set.verify(&token, Some("logout+jwt")).is_err());

        let new = generate_key().unwrap();
        let rotated = KeySet::new(vec![stored(&old, 1, Some(2)), stored(&new, 2, None)]).unwrap();
        assert_eq!(rotated.active_kid(), new.kid);
        // A token signed by the retired key still verifies while it is published.
        assert!(rotated.verify(&token, None).is_ok());
        let jwks: Value = serde_json::from_str(&rotated.jwks_json()).unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert_eq!(jwks["keys"][0]["alg"], "RS256");
        assert_eq!(jwks["keys"][0]["use"], "sig");
        assert!(jwks["keys"][0].get("d").is_none(), "private parts must not be published");

        let only_new = KeySet::new(vec![stored(&new, 2, None)]).unwrap();
        assert!(only_new.verify(&token, None).is_err());
        let mut tampered = token.clone();
        tampered.insert(token.len() / 2, 'x');
        assert!(set.verify(&tampered, None).is_err());
    }

    #[test]
    fn no_active_key_is_an_error() {
        let key = generate_key().unwrap();
        assert!(matches!(KeySet::new(vec![stored(&key, 1, Some(2))]), Err(SigningError::NoActiveKey)));
    }
}
