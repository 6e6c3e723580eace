//! URL helpers shared by the ATProto client's modules.

use url::Url;

use super::error::AtprotoError;

/// The serialized origin of a URL, without a trailing slash (`https://host[:port]`).
pub fn origin_string(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// `base` + absolute `path`, keeping any path prefix of `base` (e.g. a PLC directory under
/// `/plc`).
pub fn join_path(base: &Url, path: &str) -> Result<Url, AtprotoError> {
    let s = format!("{}{}", base.as_str().trim_end_matches('/'), path);
    let mut url = Url::parse(&s).map_err(|e| AtprotoError::Config(format!("bad URL {s}: {e}")))?;
    url.set_fragment(None);
    Ok(url)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn join_keeps_prefix() {
        let b = Url::parse("http://127.0.0.1:1234/plc/").unwrap();
        assert_eq!(join_path(&b, "/did:plc:abc").unwrap().as_str(), "http://127.0.0.1:1234/plc/did:plc:abc");
    }

    #[test]
    fn origin_has_no_path_or_trailing_slash() {
        let u = Url::parse("https://PDS.example.com:443/xrpc/x?y#z").unwrap();
        assert_eq!(origin_string(&u), "https://pds.example.com");
        assert_eq!(origin_string(&Url::parse("http://127.0.0.1:2583/").unwrap()), "http://127.0.0.1:2583");
    }
}
