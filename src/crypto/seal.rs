//! Sealing secrets at rest (signing keys, upstream tokens) with the master key: AES-256-GCM.
use std::path::Path;

use aes_gcm::{
    aead::{Aead, KeyInit},
    Aes256Gcm, Key, Nonce,
};
use base64::{engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use rand::RngCore;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("ATSSO_MASTER_KEY: must be 32 bytes, base64-encoded")]
    BadMasterKey,
    #[error("master key file {path}: {problem}")]
    KeyFile { path: String, problem: String },
    #[error("sealed value is malformed or was sealed with another master key")]
    Open,
    #[error("sealing failed")]
    Seal,
}

#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
    /// Key for MACs of values we hand out and must recognise (CSRF tokens, browser ids):
    /// HMAC-SHA256(master key, label), so it changes with the master key and differs per use.
    mac_key: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

const PREFIX: &str = "v1.";

impl Sealer {
    pub fn from_key_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() != 32 {
            return Err(SealError::BadMasterKey);
        }
        let mac_key = hmac_sha256(bytes, b"atsso mac key v1");
        Ok(Self { cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)), mac_key })
    }

    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let bytes = STANDARD.decode(text.trim()).or_else(|_| URL_SAFE_NO_PAD.decode(text.trim())).map_err(|_| SealError::BadMasterKey)?;
        Self::from_key_bytes(&bytes)
    }

    /// Reads `path`, or creates it with a fresh random key and 0600 permissions.
    pub fn load_or_create_file(path: &Path) -> Result<Self, SealError> {
        let fail = |problem: String| SealError::KeyFile { path: path.display().to_string(), problem };
        if path.exists() {
            let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
            return Self::from_base64(&text).map_err(|_| fail("does not hold a base64 32-byte key".into()));
        }
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let encoded = STANDARD.encode(key);
        write_private_file(path, encoded.as_bytes()).map_err(|e| fail(e.to_string()))?;
        Self::from_key_bytes(&key)
    }

    pub fn seal(&self, plaintext: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self.cipher.encrypt(Nonce::from_slice(&nonce), plaintext).map_err(|_| SealError::Seal)?;
        Ok(format!("{PREFIX}{}.{}", URL_SAFE_NO_PAD.encode(nonce), URL_SAFE_NO_PAD.encode(ciphertext)))
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SealError> {
        let rest = sealed.strip_prefix(PREFIX).ok_or(SealError::Open)?;
        let (nonce, ciphertext) = rest.split_once('.').ok_or(SealError::Open)?;
        let nonce = URL_SAFE_NO_PAD.decode(nonce).map_err(|_| SealError::Open)?;
        let ciphertext = URL_SAFE_NO_PAD.decode(ciphertext).map_err(|_| SealError::Open)?;
        if nonce.len() != 12 {
            return Err(SealError::Open);
        }
        self.cipher.decrypt(Nonce::from_slice(&nonce), ciphertext.as_ref()).map_err(|_| SealError::Open)
    }

    pub fn seal_str(&self, plaintext: &str) -> Result<String, SealError> {
        self.seal(plaintext.as_bytes())
    }

    pub fn open_str(&self, sealed: &str) -> Result<String, SealError> {
        String::from_utf8(self.open(sealed)?).map_err(|_| SealError::Open)
    }

    /// Base64url HMAC-SHA256 of `message` under the key derived from the master key: every node
    /// sharing the master key computes the same value; nobody else can.
    pub fn mac(&self, message: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac_sha256(&self.mac_key, message.as_bytes()))
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_and_tamper_detection() {
        let sealer = Sealer::from_key_bytes(&[7u8; 32]).unwrap();
        let sealed = sealer.seal_str("refresh-token").unwrap();
        assert!(!sealed.contains("refresh-token"));
        assert_eq!(sealer.open_str(&sealed).unwrap(), "refresh-token");
        let other = Sealer::from_key_bytes(&[8u8; 32]).unwrap();
        assert!(other.open_str(&sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push('A');
        assert!(sealer.open_str(&tampered).is_err() || tampered == sealed);
        assert!(sealer.open_str("garbage").is_err());
    }

    #[test]
    fn macs_depend_on_the_master_key_and_the_message() {
        let sealer = Sealer::from_key_bytes(&[7u8; 32]).unwrap();
        let other = Sealer::from_key_bytes(&[8u8; 32]).unwrap();
        assert_eq!(sealer.mac("a"), sealer.mac("a"));
        assert_ne!(sealer.mac("a"), sealer.mac("b"));
        assert_ne!(sealer.mac("a"), other.mac("a"));
        assert_eq!(sealer.mac("a").len(), 43);
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let first = Sealer::load_or_create_file(&path).unwrap();
        let sealed = first.seal_str("x").unwrap();
        let second = Sealer::load_or_create_file(&path).unwrap();
        assert_eq!(second.open_str(&sealed).unwrap(), "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn bad_master_key_is_refused() {
        assert!(Sealer::from_base64("c2hvcnQ=").is_err());
    }
}
