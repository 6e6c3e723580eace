//! Signing keys (josekit/OpenSSL). ID tokens and logout tokens are RS256, as OIDC clients
//! expect; access tokens are ES256 by default (an ECDSA P-256 signature costs a fraction of an
//! RSA-2048 one, and resource servers still verify them offline with the same JWKS; see
//! BENCHMARKS.md). The newest unretired key of each algorithm signs; retired keys stay published
//! until their tokens expire.
use std::collections::HashMap;

use josekit::{
    jwk::{Jwk, KeyPair},
    jws::{JwsHeader, JwsSigner, JwsVerifier, ES256, RS256},
    jwt::{self, JwtPayload},
};
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("no active {0} signing key")]
    NoActiveKey(&'static str),
    #[error("signing key: {0}")]
    Key(String),
    #[error("token is not a valid JWT signed by us")]
    Invalid,
}

/// The JWS algorithms we sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    Rs256,
    Es256,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }
}

/// A freshly generated key, PKCS#8 PEM, to be sealed and stored.
pub struct NewKey {
    pub kid: String,
    pub alg: Alg,
    pub private_pem: String,
}

pub fn generate_key(alg: Alg) -> Result<NewKey, SigningError> {
    let pem = match alg {
        Alg::Rs256 => RS256.generate_key_pair(2048).map(|k| k.to_pem_private_key()),
        Alg::Es256 => ES256.generate_key_pair().map(|k| k.to_pem_private_key()),
    }
    .map_err(|e| SigningError::Key(e.to_string()))?;
    let private_pem = String::from_utf8(pem).map_err(|e| SigningError::Key(e.to_string()))?;
    Ok(NewKey { kid: super::random_token(12), alg, private_pem })
}

/// One stored key as loaded from the database (PEM already unsealed).
pub struct StoredKey {
    pub kid: String,
    pub alg: Alg,
    pub private_pem: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

struct ActiveKey {
    kid: String,
    signer: Box<dyn JwsSigner>,
}

/// The keys in use: one signer per algorithm, every published verifier, and the JWKS document
/// pre-rendered.
pub struct KeySet {
    active: HashMap<Alg, ActiveKey>,
    verifiers: HashMap<String, Box<dyn JwsVerifier>>,
    jwks_json: bytes::Bytes,
}

fn key_error(e: impl std::fmt::Display) -> SigningError {
    SigningError::Key(e.to_string())
}

/// Public JWK, verifier and signer of one stored key.
type LoadedKey = (Jwk, Box<dyn JwsVerifier>, Box<dyn JwsSigner>);

fn load(key: &StoredKey) -> Result<LoadedKey, SigningError> {
    let mut jwk = match key.alg {
        Alg::Rs256 => RS256.key_pair_from_pem(&key.private_pem).map_err(key_error)?.to_jwk_public_key(),
        Alg::Es256 => ES256.key_pair_from_pem(&key.private_pem).map_err(key_error)?.to_jwk_public_key(),
    };
    jwk.set_key_id(&key.kid);
    jwk.set_key_use("sig");
    jwk.set_algorithm(key.alg.as_str());
    let (verifier, signer): (Box<dyn JwsVerifier>, Box<dyn JwsSigner>) = match key.alg {
        Alg::Rs256 => {
            let mut signer = RS256.signer_from_pem(&key.private_pem).map_err(key_error)?;
            signer.set_key_id(&key.kid);
            (Box::new(RS256.verifier_from_jwk(&jwk).map_err(key_error)?), Box::new(signer))
        }
        Alg::Es256 => {
            let mut signer = ES256.signer_from_pem(&key.private_pem).map_err(key_error)?;
            signer.set_key_id(&key.kid);
            (Box::new(ES256.verifier_from_jwk(&jwk).map_err(key_error)?), Box::new(signer))
        }
    };
    Ok((jwk, verifier, signer))
}

impl KeySet {
    /// `keys` are every key whose public half must still be published; the newest unretired key
    /// of each algorithm signs. Both algorithms must have one.
    pub fn new(mut keys: Vec<StoredKey>) -> Result<Self, SigningError> {
        keys.sort_by_key(|k| std::cmp::Reverse(k.created_at));
        let mut active = HashMap::new();
        let mut verifiers = HashMap::new();
        let mut jwks = Vec::new();
        for key in &keys {
            let (jwk, verifier, signer) = load(key)?;
            verifiers.insert(key.kid.clone(), verifier);
            jwks.push(Value::Object(jwk.as_ref().clone()));
            if key.retired_at.is_none() && !active.contains_key(&key.alg) {
                active.insert(key.alg, ActiveKey { kid: key.kid.clone(), signer });
            }
        }
        for alg in [Alg::Rs256, Alg::Es256] {
            if !active.contains_key(&alg) {
                return Err(SigningError::NoActiveKey(alg.as_str()));
            }
        }
        let jwks_json = serde_json::json!({ "keys": jwks }).to_string().into_bytes().into();
        Ok(Self { active, verifiers, jwks_json })
    }

    pub fn active_kid(&self, alg: Alg) -> Option<&str> {
        self.active.get(&alg).map(|k| k.kid.as_str())
    }

    /// The JWKS document (shared bytes: serving it copies nothing).
    pub fn jwks_json(&self) -> bytes::Bytes {
        self.jwks_json.clone()
    }

    /// Signs `claims` as a JWT with header `typ`, the active key of `alg` and its `kid`.
    pub fn sign(&self, alg: Alg, typ: &str, claims: Map<String, Value>) -> Result<String, SigningError> {
        let key = self.active.get(&alg).ok_or(SigningError::NoActiveKey(alg.as_str()))?;
        let mut header = JwsHeader::new();
        header.set_token_type(typ);
        header.set_key_id(&key.kid);
        let payload = JwtPayload::from_map(claims).map_err(key_error)?;
        jwt::encode_with_signer(&payload, &header, key.signer.as_ref()).map_err(key_error)
    }

    /// Verifies the signature (any published key, by `kid`; the header's `alg` must be the
    /// key's) and the header `typ`; returns the claims. Expiry and audience are the caller's.
    pub fn verify(&self, token: &str, expected_typ: Option<&str>) -> Result<Map<String, Value>, SigningError> {
        let (payload, header) = jwt::decode_with_verifier_selector(token, |header| {
            Ok(header.key_id().and_then(|kid| self.verifiers.get(kid)).map(|v| v.as_ref()))
        })
        .map_err(|_| SigningError::Invalid)?;
        if let Some(typ) = expected_typ {
            if !header.token_type().is_some_and(|t| t.eq_ignore_ascii_case(typ)) {
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
        StoredKey { kid: key.kid.clone(), alg: key.alg, private_pem: key.private_pem.clone(), created_at, retired_at }
    }

    #[test]
    fn sign_verify_and_rotation_overlap() {
        let old = generate_key(Alg::Rs256).unwrap();
        let ec = generate_key(Alg::Es256).unwrap();
        let set = KeySet::new(vec![stored(&old, 1, None), stored(&ec, 1, None)]).unwrap();
        let mut claims = Map::new();
        claims.insert("sub".into(), "did:plc:abc".into());
        let token = set.sign(Alg::Rs256, "JWT", claims.clone()).unwrap();
        assert_eq!(set.verify(&token, Some("JWT")).unwrap()["sub"], "did:plc:abc");
        assert!(set.verify(&token, Some("logout+jwt")).is_err());
        let access = set.sign(Alg::Es256, "at+jwt", claims).unwrap();
        assert!(set.verify(&access, Some("at+jwt")).is_ok());

        let new = generate_key(Alg::Rs256).unwrap();
        let rotated = KeySet::new(vec![stored(&old, 1, Some(2)), stored(&new, 2, None), stored(&ec, 1, None)]).unwrap();
        assert_eq!(rotated.active_kid(Alg::Rs256), Some(new.kid.as_str()));
        // A token signed by the retired key still verifies while it is published.
        assert!(rotated.verify(&token, None).is_ok());
        let jwks: Value = serde_json::from_slice(&rotated.jwks_json()).unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 3);
        for key in keys {
            assert_eq!(key["use"], "sig");
            assert!(key.get("d").is_none(), "private parts must not be published");
        }
        assert!(keys.iter().any(|k| k["alg"] == "ES256" && k["crv"] == "P-256"));

        let only_new = KeySet::new(vec![stored(&new, 2, None), stored(&ec, 1, None)]).unwrap();
        assert!(only_new.verify(&token, None).is_err());
        let mut tampered = token.clone();
        tampered.insert(token.len() / 2, 'x');
        assert!(set.verify(&tampered, None).is_err());
    }

    #[test]
    fn each_algorithm_needs_an_active_key() {
        let rsa = generate_key(Alg::Rs256).unwrap();
        let ec = generate_key(Alg::Es256).unwrap();
        assert!(matches!(KeySet::new(vec![stored(&rsa, 1, Some(2)), stored(&ec, 1, None)]), Err(SigningError::NoActiveKey("RS256"))));
        assert!(matches!(KeySet::new(vec![stored(&rsa, 1, None)]), Err(SigningError::NoActiveKey("ES256"))));
    }
}
