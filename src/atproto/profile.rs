//! Profile (display name, avatar) and email of the logged-in account, read from its PDS with
//! the DPoP-bound access token.

use crate::atproto::http::Endpoint;
use serde_json::Value;
use url::Url;

use super::dpop::DpopKey;
use super::dpop_http::DpopHttp;
use super::error::AtprotoError;
use super::urls::join_path;

/// What the `app.bsky.actor.profile/self` record gave us. Missing record: all `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub display_name: Option<String>,
    pub avatar: Option<String>,
}

fn is_cid(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Parse a `getRecord` response body into a [`Profile`] (avatar URL built on `pds_url`).
pub fn profile_from_record(record: &Value, pds_url: &Url, did: &str) -> Result<Profile, AtprotoError> {
    let value = record.get("value").unwrap_or(&Value::Null);
    let display_name = value
        .get("displayName")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.chars().take(640).collect::<String>());
    let cid = value.get("avatar").and_then(|a| a.get("ref").and_then(|r| r.get("$link")).or_else(|| a.get("cid")).and_then(Value::as_str));
    let avatar = match cid {
        Some(cid) if is_cid(cid) => {
            let mut u = join_path(pds_url, "/xrpc/com.atproto.sync.getBlob")?;
            u.query_pairs_mut().append_pair("did", did).append_pair("cid", cid);
            Some(u.to_string())
        }
        _ => None,
    };
    Ok(Profile { display_name, avatar })
}

/// `com.atproto.repo.getRecord` for `app.bsky.actor.profile/self`.
pub(crate) async fn fetch_profile(
    http: &DpopHttp,
    dpop: &DpopKey,
    pds_url: &Url,
    did: &str,
    access_token: &str,
) -> Result<Profile, AtprotoError> {
    let mut url = join_path(pds_url, "/xrpc/com.atproto.repo.getRecord")?;
    url.query_pairs_mut().append_pair("repo", did).append_pair("collection", "app.bsky.actor.profile").append_pair("rkey", "self");
    let resp = http.request(Endpoint::GetRecord, dpop, &url, Some(access_token), None, AtprotoError::PdsUnreachable).await?;
    if !resp.is_success() {
        if let Some((error, _)) = resp.oauth_error() {
            if resp.status == 400 && error == "RecordNotFound" {
                return Ok(Profile::default());
            }
        }
        if resp.status == 404 {
            return Ok(Profile::default());
        }
        return Err(resp.upstream_error());
    }
    let record: Value = resp.json().map_err(|_| AtprotoError::InvalidResponse("profile record is not JSON".into()))?;
    profile_from_record(&record, pds_url, did)
}

/// `com.atproto.server.getSession`: `(email, email_verified)`.
pub(crate) async fn fetch_email(
    http: &DpopHttp,
    dpop: &DpopKey,
    pds_url: &Url,
    did: &str,
    access_token: &str,
) -> Result<(Option<String>, Option<bool>), AtprotoError> {
    let url = join_path(pds_url, "/xrpc/com.atproto.server.getSession")?;
    let resp = http.request(Endpoint::GetSession, dpop, &url, Some(access_token), None, AtprotoError::PdsUnreachable).await?;
    if !resp.is_success() {
        return Err(resp.upstream_error());
    }
    let v: Value = resp.json().map_err(|_| AtprotoError::InvalidResponse("getSession is not JSON".into()))?;
    if v.get("did").and_then(Value::as_str) != Some(did) {
        return Err(AtprotoError::InvalidResponse("getSession is for another DID".into()));
    }
    let email = v.get("email").and_then(Value::as_str).filter(|e| e.contains('@') && e.len() <= 320).map(str::to_string);
    let verified = email.as_ref().map(|_| v.get("emailConfirmed").and_then(Value::as_bool).unwrap_or(false));
    Ok((email, verified))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_profile_record() {
        let pds = Url::parse("https://pds.example.com").unwrap();
        let rec = json!({"uri": "at://x", "value": {
            "$type": "app.bsky.actor.profile",
            "displayName": "  Alice  ",
            "avatar": {"$type": "blob", "ref": {"$link": "bafkreiabc"}, "mimeType": "image/jpeg", "size": 1}
        }});
        let p = profile_from_record(&rec, &pds, "did:plc:z72i7hdynmk6r22z27h6tvur").unwrap();
        assert_eq!(p.display_name.as_deref(), Some("Alice"));
        assert_eq!(
            p.avatar.as_deref(),
            Some("https://pds.example.com/xrpc/com.atproto.sync.getBlob?did=did%3Aplc%3Az72i7hdynmk6r22z27h6tvur&cid=bafkreiabc")
        );
        let odd = json!({"value": {"avatar": {"ref": {"$link": "../../evil?x=1"}}}});
        assert_eq!(profile_from_record(&odd, &pds, "did:web:x.com").unwrap(), Profile::default());
    }
}
