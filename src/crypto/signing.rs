//! Signing keys (josekit/OpenSSL). ID tokens and logout tokens are RS256, as OIDC clients
//! expect; access tokens are RS256 by default (what RS256-only verifiers accept) or ES256 per
//! client or globally (an ECDSA P-256 signature costs a fraction of an RSA-2048 one, and
//! resource servers still verify them offline with the same JWKS; see BENCHMARKS.md).
//!
//! A key has three states: *published* (in the JWKS, not yet signing) from its creation,
//! *active* (signing) from `activates_at`, *retired* from `retired_at` (the instant its
//! successor activates), and stays published until the tokens it signed have expired. Which key
//! signs is decided at signing time by the clock, so activation needs no reload.
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
    /// Signs from this instant on (until retired).
    pub activates_at: i64,
    pub retired_at: Option<i64>,
}

/// Where a key is in its life at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// In the JWKS, not signing yet.
    Published,
    /// Signing.
    Active,
    /// Not signing; published while `is_published` says so.
    Retired,
}

impl KeyState {
    pub fn at(activates_at: i64, retired_at: Option<i64>, now: i64) -> Self {
        if retired_at.is_some_and(|r| r <= now) {
            Self::Retired
        } else if activates_at <= now {
            Self::Active
        } else {
            Self::Published
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Published => "published",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }
}

/// Whether a key belongs in the JWKS at `now`: until `overlap_secs` (the longest token lifetime
/// plus slack) after it was retired.
pub fn is_published(retired_at: Option<i64>, now: i64, overlap_secs: i64) -> bool {
    retired_at.is_none_or(|r| r > now - overlap_secs)
}

struct SigningKey {
    kid: String,
    activates_at: i64,
    retired_at: Option<i64>,
    signer: Box<dyn JwsSigner>,
}

/// The loaded keys: the signers of each algorithm (newest activation first), every published
/// verifier, and the JWKS document pre-rendered.
pub struct KeySet {
    signers: HashMap<Alg, Vec<SigningKey>>,
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
    /// `keys` are every key whose public half must be published now (pending ones included);
    /// each algorithm must have a key active now.
    pub fn new(keys: Vec<StoredKey>) -> Result<Self, SigningError> {
        Self::at(keys, crate::clock::now())
    }

    /// From every stored key that may still matter, the ones published at `now` (see
    /// `is_published`).
    pub fn published_at(keys: Vec<StoredKey>, now: i64, overlap_secs: i64) -> Result<Self, SigningError> {
        Self::at(keys.into_iter().filter(|k| is_published(k.retired_at, now, overlap_secs)).collect(), now)
    }

    /// As `new`, with the clock read by the caller.
    pub fn at(mut keys: Vec<StoredKey>, now: i64) -> Result<Self, SigningError> {
        keys.sort_by_key(|k| std::cmp::Reverse((k.activates_at, k.created_at)));
        let mut signers: HashMap<Alg, Vec<SigningKey>> = HashMap::new();
        let mut verifiers = HashMap::new();
        let mut jwks = Vec::new();
        for key in &keys {
            let (jwk, verifier, signer) = load(key)?;
            verifiers.insert(key.kid.clone(), verifier);
            jwks.push(Value::Object(jwk.as_ref().clone()));
            signers.entry(key.alg).or_default().push(SigningKey {
                kid: key.kid.clone(),
                activates_at: key.activates_at,
                retired_at: key.retired_at,
                signer,
            });
        }
        let set = Self { signers, verifiers, jwks_json: serde_json::json!({ "keys": jwks }).to_string().into_bytes().into() };
        for alg in [Alg::Rs256, Alg::Es256] {
            if !set.has_active_key(alg, now) {
                return Err(SigningError::NoActiveKey(alg.as_str()));
            }
        }
        Ok(set)
    }

    fn has_active_key(&self, alg: Alg, now: i64) -> bool {
        self.signers.get(&alg).is_some_and(|keys| keys.iter().any(|k| KeyState::at(k.activates_at, k.retired_at, now) == KeyState::Active))
    }

    /// The key of `alg` that signs at `now`: the newest activation that has come and is not
    /// retired yet. Keys still waiting for their activation are never used; should no key be
    /// active (clocks apart), the newest that has been active keeps signing.
    fn signer_at(&self, alg: Alg, now: i64) -> Option<&SigningKey> {
        let keys = self.signers.get(&alg)?;
        keys.iter()
            .find(|k| KeyState::at(k.activates_at, k.retired_at, now) == KeyState::Active)
            .or_else(|| keys.iter().find(|k| k.activates_at <= now))
    }

    /// The `kid` that signs tokens of `alg` at `now`.
    pub fn signing_kid_at(&self, alg: Alg, now: i64) -> Option<&str> {
        self.signer_at(alg, now).map(|k| k.kid.as_str())
    }

    pub fn active_kid(&self, alg: Alg) -> Option<&str> {
        self.signing_kid_at(alg, crate::clock::now())
    }

    /// The JWKS document (shared bytes: serving it copies nothing).
    pub fn jwks_json(&self) -> bytes::Bytes {
        self.jwks_json.clone()
    }

    /// Signs `claims` as a JWT with header `typ`, the active key of `alg` and its `kid`.
    pub fn sign(&self, alg: Alg, typ: &str, claims: Map<String, Value>) -> Result<String, SigningError> {
        self.sign_at(alg, typ, claims, crate::clock::now())
    }

    /// Signs with the key of `alg` active at `now`: the tokens of one response pass the same
    /// instant, so a rotation's activation never splits them between two key generations.
    pub fn sign_at(&self, alg: Alg, typ: &str, claims: Map<String, Value>, now: i64) -> Result<String, SigningError> {
        let key = self.signer_at(alg, now).ok_or(SigningError::NoActiveKey(alg.as_str()))?;
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
        stored_pending(key, created_at, created_at, retired_at)
    }

    fn stored_pending(key: &NewKey, created_at: i64, activates_at: i64, retired_at: Option<i64>) -> StoredKey {
        StoredKey { kid: key.kid.clone(), alg: key.alg, private_pem: key.private_pem.clone(), created_at, activates_at, retired_at }
    }

    fn kids(set: &KeySet) -> Vec<String> {
        let jwks: Value = serde_json::from_slice(&set.jwks_json()).unwrap();
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
    }

    fn header_kid(token: &str) -> String {
        use base64::Engine;
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap();
        serde_json::from_slice::<Value>(&header).unwrap()["kid"].as_str().unwrap().to_owned()
    }

    #[test]
    fn a_published_key_signs_only_from_its_activation() {
        let (old, ec) = (generate_key(Alg::Rs256).unwrap(), generate_key(Alg::Es256).unwrap());
        let new = generate_key(Alg::Rs256).unwrap();
        // Rotated at 1000 with a 600 s delay: the new key activates at 1600, the old one retires then.
        let keys = || vec![stored(&old, 1, Some(1600)), stored_pending(&new, 1000, 1600, None), stored(&ec, 1, None)];
        let set = KeySet::at(keys(), 1000).unwrap();
        assert!(kids(&set).contains(&new.kid), "published from its creation");
        assert_eq!(set.signing_kid_at(Alg::Rs256, 1000), Some(old.kid.as_str()));
        assert_eq!(set.signing_kid_at(Alg::Rs256, 1599), Some(old.kid.as_str()), "not before its activation");
        assert_eq!(set.signing_kid_at(Alg::Rs256, 1600), Some(new.kid.as_str()), "from its activation, without a reload");
        assert_eq!(set.signing_kid_at(Alg::Es256, 1600), Some(ec.kid.as_str()));
        assert_eq!(KeyState::at(1600, None, 1599), KeyState::Published);
        assert_eq!(KeyState::at(1600, None, 1600), KeyState::Active);
        assert_eq!(KeyState::at(1, Some(1600), 1599), KeyState::Active);
        assert_eq!(KeyState::at(1, Some(1600), 1600), KeyState::Retired);

        // sign() reads the clock: a pending key far in the future is not used, a past one is.
        let far = i64::MAX / 2;
        let pending = KeySet::new(vec![stored(&old, 1, Some(far)), stored_pending(&new, 1, far, None), stored(&ec, 1, None)]).unwrap();
        assert_eq!(header_kid(&pending.sign(Alg::Rs256, "JWT", Map::new()).unwrap()), old.kid);
        let activated = KeySet::new(vec![stored(&old, 1, Some(2)), stored_pending(&new, 1, 2, None), stored(&ec, 1, None)]).unwrap();
        let token = activated.sign(Alg::Rs256, "JWT", Map::new()).unwrap();
        assert_eq!(header_kid(&token), new.kid);
        assert!(activated.verify(&token, Some("JWT")).is_ok());
    }

    #[test]
    fn a_second_rotation_before_the_first_activates_skips_the_pending_key() {
        let (k0, k1, k2, ec) = (
            generate_key(Alg::Rs256).unwrap(),
            generate_key(Alg::Rs256).unwrap(),
            generate_key(Alg::Rs256).unwrap(),
            generate_key(Alg::Es256).unwrap(),
        );
        // k1 was due at 1600; an emergency rotation at 1100 (`--now`) retires k0 and k1 at once.
        let set = KeySet::at(
            vec![
                stored(&k0, 1, Some(1100)),
                stored_pending(&k1, 1000, 1600, Some(1100)),
                stored_pending(&k2, 1100, 1100, None),
                stored(&ec, 1, None),
            ],
            1100,
        )
        .unwrap();
        for now in [1100, 1600, 5000] {
            assert_eq!(set.signing_kid_at(Alg::Rs256, now), Some(k2.kid.as_str()), "at {now}");
        }
    }

    #[test]
    fn a_retired_key_stays_in_the_jwks_within_the_overlap_and_leaves_after() {
        let (old, new, ec) = (generate_key(Alg::Rs256).unwrap(), generate_key(Alg::Rs256).unwrap(), generate_key(Alg::Es256).unwrap());
        let keys = || vec![stored(&old, 1, Some(1600)), stored_pending(&new, 1000, 1600, None), stored(&ec, 1, None)];
        let overlap = 3660;
        let within = KeySet::published_at(keys(), 1600 + overlap - 1, overlap).unwrap();
        assert!(kids(&within).contains(&old.kid));
        // A token the old key signed while it was active.
        let token =
            KeySet::at(vec![stored(&old, 1, None), stored(&ec, 1, None)], 1000).unwrap().sign(Alg::Rs256, "JWT", Map::new()).unwrap();
        assert_eq!(header_kid(&token), old.kid);
        assert!(within.verify(&token, None).is_ok(), "its tokens still verify");
        let after = KeySet::published_at(keys(), 1600 + overlap, overlap).unwrap();
        assert!(!kids(&after).contains(&old.kid));
        assert!(after.verify(&token, None).is_err());
        assert_eq!(kids(&after).len(), 2);
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
