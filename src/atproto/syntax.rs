//! Handle and DID syntax (atproto spec), checked before any network access.

use super::error::AtprotoError;

/// TLDs that can never be a resolvable atproto handle (spec: "Additional Non-Syntax
/// Restrictions"). `.test` stays allowed: local development networks use it.
const DISALLOWED_TLDS: &[&str] = &["alt", "arpa", "example", "internal", "invalid", "local", "localhost", "onion"];

/// Validate a handle and return it normalized (lowercase, no leading `@`, no trailing dot).
pub fn normalize_handle(input: &str) -> Result<String, AtprotoError> {
    let h = input.trim();
    let h = h.strip_prefix("at://").unwrap_or(h);
    let h = h.strip_prefix('@').unwrap_or(h);
    let h = h.to_ascii_lowercase();
    let bad = |why: &str| Err(AtprotoError::InvalidHandle(why.to_string()));
    if h.is_empty() {
        return bad("empty");
    }
    if h.len() > 253 {
        return bad("longer than 253 characters");
    }
    if !h.is_ascii() {
        return bad("non-ASCII characters");
    }
    let labels: Vec<&str> = h.split('.').collect();
    if labels.len() < 2 {
        return bad("needs at least two labels (like alice.bsky.social)");
    }
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return bad("each label must be 1 to 63 characters");
        }
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return bad("only letters, digits, hyphens and dots are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("labels cannot start or end with a hyphen");
        }
    }
    let tld = labels[labels.len() - 1];
    if !tld.as_bytes()[0].is_ascii_alphabetic() {
        return bad("the last label must start with a letter");
    }
    if DISALLOWED_TLDS.contains(&tld) {
        return bad("this top-level domain cannot be used for handles");
    }
    Ok(h)
}

/// True when `s` is a syntactically valid handle (any case).
pub fn is_valid_handle(s: &str) -> bool {
    !s.starts_with('@') && !s.starts_with("at://") && normalize_handle(s).is_ok()
}

/// General atproto DID syntax: `did:<method>:<id>`, method lowercase letters, id of
/// `[A-Za-z0-9._:%-]`, `%` followed by two hex digits, not ending in `:` or `%`, ≤ 2048 chars.
pub fn validate_did_syntax(did: &str) -> Result<(), AtprotoError> {
    let bad = |why: &str| Err(AtprotoError::InvalidDid(why.to_string()));
    if did.len() > 2048 {
        return bad("too long");
    }
    let rest = match did.strip_prefix("did:") {
        Some(r) => r,
        None => return bad("must start with did:"),
    };
    let (method, id) = match rest.split_once(':') {
        Some(x) => x,
        None => return bad("missing method-specific identifier"),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_lowercase()) {
        return bad("method must be lowercase letters");
    }
    if id.is_empty() || id.ends_with(':') || id.ends_with('%') {
        return bad("bad identifier");
    }
    let bytes = id.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).is_some_and(|c| c.is_ascii_hexdigit());
            if !(hex(i + 1) && hex(i + 2)) {
                return bad("bad percent-encoding");
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')) {
            return bad("identifier has a forbidden character");
        }
        i += 1;
    }
    Ok(())
}

/// A DID this client can resolve: `did:plc` (24 base32 characters) or hostname-level `did:web`.
pub fn validate_did(did: &str) -> Result<(), AtprotoError> {
    validate_did_syntax(did)?;
    if let Some(id) = did.strip_prefix("did:plc:") {
        if id.len() == 24 && id.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)) {
            return Ok(());
        }
        return Err(AtprotoError::InvalidDid("did:plc must be 24 base32 characters".into()));
    }
    if let Some(id) = did.strip_prefix("did:web:") {
        did_web_host(id)?;
        return Ok(());
    }
    Err(AtprotoError::InvalidDid("only did:plc and did:web are supported".into()))
}

/// Host (with optional port, only for `localhost`) of a `did:web` identifier. Paths (`:`) are
/// not allowed in atproto.
pub fn did_web_host(id: &str) -> Result<String, AtprotoError> {
    if id.contains(':') {
        return Err(AtprotoError::InvalidDid("did:web with a path is not supported".into()));
    }
    let lower = id.to_ascii_lowercase();
    if let Some((host, port)) = lower.split_once("%3a") {
        if host == "localhost" && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(format!("localhost:{port}"));
        }
        return Err(AtprotoError::InvalidDid("did:web port allowed only for localhost".into()));
    }
    if lower.contains('%') {
        return Err(AtprotoError::InvalidDid("bad did:web host".into()));
    }
    if lower == "localhost" {
        return Ok(lower);
    }
    normalize_handle(&lower).map_err(|_| AtprotoError::InvalidDid("did:web host is not a valid hostname".into()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn valid_handles() {
        for h in [
            "jay.bsky.social",
            "8.cn",
            "name.t--t",
            "XX.LCS.MIT.EDU",
            "a.co",
            "xn--notarealidn.com",
            "xn--fiqa61au8b7zsevnm8ak20mc4a87e.xn--fiqs8s",
            "xn--ls8h.test",
            "example.t",
            "alice.test",
        ] {
            assert!(is_valid_handle(h), "{h} should be valid");
        }
        assert_eq!(normalize_handle("@Alice.Test").unwrap(), "alice.test");
        assert_eq!(normalize_handle(" at://alice.test ").unwrap(), "alice.test");
    }

    #[test]
    fn invalid_handles() {
        let long_label = format!("{}.com", "a".repeat(64));
        let too_long = format!("{}.com", vec!["a".repeat(63); 4].join("."));
        for h in [
            "jo@hn.test",
            "💩.test",
            "john..test",
            "xn--bcher-.tld",
            "john.0",
            "cn.8",
            "www.masełkowski.pl.com",
            "org",
            "name.org.",
            "-alice.test",
            "alice-.test",
            "alice_b.test",
            "alice.test/../x",
            "127.0.0.1",
            "alice.local",
            "alice.localhost",
            "alice.onion",
            "alice.arpa",
            "alice.internal",
            "",
            long_label.as_str(),
            too_long.as_str(),
        ] {
            assert!(!is_valid_handle(h), "{h} should be invalid");
        }
    }

    #[test]
    fn valid_dids() {
        for d in ["did:plc:z72i7hdynmk6r22z27h6tvur", "did:web:example.com", "did:web:localhost%3A1234"] {
            assert!(validate_did(d).is_ok(), "{d}");
        }
        for d in [
            "did:method:val:two",
            "did:m:v",
            "did:method::::val",
            "did:method:-:_:.",
            "did:key:zQ3shZc2QzApp2oymGvQbzP8eKheVshBHbU4ZYjeXqwSKEn6N",
            "did:method:val%BB",
        ] {
            assert!(validate_did_syntax(d).is_ok(), "{d}");
        }
    }

    #[test]
    fn invalid_dids() {
        for d in [
            "did",
            "didmethodval",
            "method:did:val",
            "did:method:",
            "didmethod:val",
            "did:methodval",
            ":did:method:val",
            "DID:method:val",
            "did:METHOD:val",
            "did:m123:val",
            "did:method:val/two",
            "did:method:val?two",
            "did:method:val#two",
            "did:method:val%",
            "did:method:val%zz",
        ] {
            assert!(validate_did_syntax(d).is_err(), "{d}");
        }
        for d in [
            "did:plc:short",
            "did:plc:Z72i7hdynmk6r22z27h6tvur",
            "did:plc:z72i7hdynmk6r22z27h6tvu1",
            "did:web:example.com:path",
            "did:web:example.com%3A8080",
            "did:key:zQ3shZc2QzApp2oymGvQbzP8eKheVshBHbU4ZYjeXqwSKEn6N",
            "did:web:127.0.0.1",
        ] {
            assert!(validate_did(d).is_err(), "{d}");
        }
    }
}

/// Property tests: any input gives a clear `Ok` or the module's own error, never a panic.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn label() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9]([a-zA-Z0-9-]{0,20}[a-zA-Z0-9])?"
    }

    fn tld() -> impl Strategy<Value = String> {
        "[a-zA-Z][a-zA-Z0-9]{0,10}".prop_filter("not a disallowed TLD", |t| !DISALLOWED_TLDS.contains(&t.to_ascii_lowercase().as_str()))
    }

    /// What every answer of `normalize_handle` must look like.
    fn check_handle_answer(input: &str) -> Result<(), TestCaseError> {
        match normalize_handle(input) {
            Ok(h) => {
                prop_assert!(h.len() <= 253 && h.is_ascii() && h.contains('.'), "{h:?}");
                prop_assert_eq!(&h, &h.to_ascii_lowercase());
                let again = normalize_handle(&h).ok();
                prop_assert_eq!(again.as_deref(), Some(h.as_str()), "normalizing twice changes nothing");
                prop_assert!(is_valid_handle(&h));
            }
            Err(e) => prop_assert!(matches!(e, AtprotoError::InvalidHandle(_)), "{e:?}"),
        }
        Ok(())
    }

    /// What every answer of the DID checks must look like.
    fn check_did_answers(input: &str) -> Result<(), TestCaseError> {
        let syntax = validate_did_syntax(input);
        prop_assert!(syntax.as_ref().err().is_none_or(|e| matches!(e, AtprotoError::InvalidDid(_))), "{syntax:?}");
        match validate_did(input) {
            Ok(()) => {
                prop_assert!(syntax.is_ok(), "a usable DID is a syntactically valid one");
                prop_assert!(input.starts_with("did:plc:") || input.starts_with("did:web:"));
            }
            Err(e) => prop_assert!(matches!(e, AtprotoError::InvalidDid(_)), "{e:?}"),
        }
        if let Ok(host) = did_web_host(input) {
            prop_assert!(!host.contains('/') && !host.contains('@') && !host.is_empty(), "{host:?}");
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_string_is_a_handle_or_a_clear_error(input in any::<String>()) {
            check_handle_answer(&input)?;
        }

        #[test]
        fn handle_like_strings_are_a_handle_or_a_clear_error(input in "(at://)?@?[a-zA-Z0-9._:/@ -]{0,80}") {
            check_handle_answer(&input)?;
        }

        #[test]
        fn generated_handles_are_accepted_and_lowercased(labels in prop::collection::vec(label(), 1..4), tld in tld(), at in any::<bool>()) {
            let handle = format!("{}.{tld}", labels.join("."));
            prop_assume!(handle.len() <= 253);
            let input = if at { format!("@{handle}") } else { handle.clone() };
            prop_assert_eq!(normalize_handle(&input).unwrap(), handle.to_ascii_lowercase());
        }

        #[test]
        fn over_long_labels_are_refused(label in "[a-z]{64,80}", tld in tld()) {
            let handle = format!("{label}.{tld}");
            prop_assert!(normalize_handle(&handle).is_err());
        }

        #[test]
        fn any_string_is_a_did_or_a_clear_error(input in any::<String>()) {
            check_did_answers(&input)?;
        }

        #[test]
        fn did_like_strings_are_a_did_or_a_clear_error(input in "did:[a-zA-Z]{0,5}:[a-zA-Z0-9._:%/?#-]{0,40}") {
            check_did_answers(&input)?;
            if let Some(id) = input.strip_prefix("did:web:") {
                check_did_answers(&format!("did:web:{}", id.to_ascii_uppercase()))?;
            }
        }

        #[test]
        fn plc_dids_are_exactly_24_base32_characters(id in "[a-z2-7]{0,40}") {
            prop_assert_eq!(validate_did(&format!("did:plc:{id}")).is_ok(), id.len() == 24);
        }

        #[test]
        fn did_web_of_a_valid_host_is_accepted(labels in prop::collection::vec(label(), 1..3), tld in tld()) {
            let host = format!("{}.{tld}", labels.join("."));
            let (plain, with_port) = (format!("did:web:{host}"), format!("did:web:{host}%3A8080"));
            prop_assert!(validate_did(&plain).is_ok());
            prop_assert!(validate_did(&with_port).is_err(), "ports only for localhost");
        }
    }
}
