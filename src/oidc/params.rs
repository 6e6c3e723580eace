//! Request parameters (query string or form body) parsed strictly: RFC 6749 §3.1 says parameters
//! must not be included more than once, and we bound their size.
use std::collections::HashMap;

/// Refuse parameter sets larger than this (bytes of the encoded string).
pub const MAX_ENCODED_LEN: usize = 16 * 1024;
/// Refuse single values longer than this.
pub const MAX_VALUE_LEN: usize = 4096;

#[derive(Debug, Default, Clone)]
pub struct Params(HashMap<String, String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("request parameters are too large")]
    TooLarge,
    #[error("request parameters are not valid form encoding")]
    Malformed,
    #[error("parameter `{0}` is included more than once")]
    Duplicate(String),
    #[error("parameter `{0}` is too long")]
    ValueTooLong(String),
}

impl Params {
    pub fn parse(encoded: &str) -> Result<Self, ParamsError> {
        if encoded.len() > MAX_ENCODED_LEN {
            return Err(ParamsError::TooLarge);
        }
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(encoded).map_err(|_| ParamsError::Malformed)?;
        let mut map = HashMap::with_capacity(pairs.len());
        for (key, value) in pairs {
            if value.len() > MAX_VALUE_LEN {
                return Err(ParamsError::ValueTooLong(key));
            }
            // An empty value counts as absent (RFC 6749 §3.1).
            if value.is_empty() {
                continue;
            }
            if map.contains_key(&key) {
                return Err(ParamsError::Duplicate(key));
            }
            map.insert(key, value);
        }
        Ok(Self(map))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_oversize_are_refused() {
        assert_eq!(Params::parse("a=1&a=2").unwrap_err(), ParamsError::Duplicate("a".into()));
        assert_eq!(Params::parse(&"x".repeat(MAX_ENCODED_LEN + 1)).unwrap_err(), ParamsError::TooLarge);
        let long = format!("a={}", "y".repeat(MAX_VALUE_LEN + 1));
        assert_eq!(Params::parse(&long).unwrap_err(), ParamsError::ValueTooLong("a".into()));
        let params = Params::parse("a=1&b=&c=%20x").unwrap();
        assert_eq!(params.get("a"), Some("1"));
        assert_eq!(params.get("b"), None);
        assert_eq!(params.get("c"), Some(" x"));
    }
}
