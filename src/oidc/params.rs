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

    mod properties {
        use std::collections::BTreeMap;

        use proptest::prelude::*;

        use super::super::*;

        /// Text that exercises the form decoder: separators, percent escapes (valid or not),
        /// `+`, non-ASCII and control characters.
        fn form_like() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    Just("&".to_owned()),
                    Just("=".to_owned()),
                    Just("+".to_owned()),
                    Just("%".to_owned()),
                    "%[0-9a-fA-F]{2}",
                    "[a-z]{1,4}",
                    any::<char>().prop_map(String::from),
                ],
                0..40,
            )
            .prop_map(|parts| parts.concat())
        }

        /// Distinct names with non-empty values.
        fn pairs() -> impl Strategy<Value = BTreeMap<String, String>> {
            proptest::collection::btree_map("[a-z_]{1,12}", any::<String>().prop_filter("non-empty", |v| !v.is_empty()), 0..8)
        }

        fn encode(pairs: &[(&str, &str)]) -> String {
            serde_urlencoded::to_string(pairs).unwrap()
        }

        proptest! {
            /// Whatever arrives, the answer is Ok or a typed error, never a panic; what is kept
            /// is bounded and never empty.
            #[test]
            fn any_input_gives_ok_or_a_clear_error(input in prop_oneof![any::<String>(), form_like()]) {
                match Params::parse(&input) {
                    Ok(params) => {
                        prop_assert!(input.len() <= MAX_ENCODED_LEN);
                        for value in params.0.values() {
                            prop_assert!(!value.is_empty() && value.len() <= MAX_VALUE_LEN);
                        }
                    }
                    Err(ParamsError::TooLarge) => prop_assert!(input.len() > MAX_ENCODED_LEN),
                    Err(error) => prop_assert!(!error.to_string().is_empty()),
                }
            }

            /// What a client encodes is what we read back.
            #[test]
            fn encoded_pairs_round_trip(pairs in pairs()) {
                let list: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let encoded = encode(&list);
                prop_assume!(encoded.len() <= MAX_ENCODED_LEN && pairs.values().all(|v| v.len() <= MAX_VALUE_LEN));
                let params = Params::parse(&encoded).unwrap();
                for (name, value) in &pairs {
                    prop_assert_eq!(params.get(name), Some(value.as_str()));
                }
                prop_assert_eq!(params.0.len(), pairs.len());
            }

            /// A name given twice with values is refused (RFC 6749 §3.1), wherever the two are
            /// and however the name is spelled (percent-encoded or not).
            #[test]
            fn a_repeated_name_is_refused(
                pairs in pairs(),
                name in "[a-z_]{1,12}",
                first in "[ -~]{1,20}",
                second in "[ -~]{1,20}",
                at in any::<prop::sample::Index>(),
                escape_name in any::<bool>(),
            ) {
                let mut list: Vec<(String, String)> = pairs.into_iter().filter(|(k, _)| *k != name).collect();
                list.push((name.clone(), first));
                let position = at.index(list.len() + 1);
                let mut encoded = encode(&list.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>());
                let spelled: String = if escape_name { name.bytes().map(|b| format!("%{b:02X}")).collect() } else { name.clone() };
                let repeat = format!("{spelled}={}", encode(&[("v", second.as_str())]).trim_start_matches("v="));
                let mut parts: Vec<String> = encoded.split('&').map(String::from).collect();
                parts.insert(position.min(parts.len()), repeat);
                encoded = parts.join("&");
                prop_assert_eq!(Params::parse(&encoded).unwrap_err(), ParamsError::Duplicate(name));
            }

            /// An empty value counts as absent, so it neither sets nor repeats a name.
            #[test]
            fn empty_values_are_absent(name in "[a-z_]{1,12}", value in "[a-z0-9]{1,12}") {
                let params = Params::parse(&format!("{name}=&{name}={value}&{name}=")).unwrap();
                prop_assert_eq!(params.get(&name), Some(value.as_str()));
                let alone = Params::parse(&format!("{name}=")).unwrap();
                prop_assert!(!alone.contains(&name));
            }

            /// A single value over the bound is refused by name, whatever the rest.
            #[test]
            fn an_oversized_value_is_refused(name in "[a-z_]{1,12}", extra in 1usize..64) {
                let encoded = format!("{name}={}", "v".repeat(MAX_VALUE_LEN + extra));
                prop_assert_eq!(Params::parse(&encoded).unwrap_err(), ParamsError::ValueTooLong(name));
            }
        }
    }
}
