//! Is this call within what the user granted the app? Pure functions over the token's atproto
//! permissions: no I/O.
//!
//! - Repo writes (`createRecord`, `putRecord`, `deleteRecord`, `applyWrites`) are checked per
//!   collection and action (`putRecord` is an update); `repo` in the body is always set to the
//!   user's DID (overwritten when the app named another: the app acts for this user only, and
//!   the PDS would refuse a write to a repo that is not the session's anyway).
//! - `uploadBlob` is checked against `blob` MIME patterns (the request's `Content-Type`).
//! - Reads the PDS answers to any `atproto` token about the user's own account and public repo
//!   data ([`OPEN_READS`], GET, no `atproto-proxy` header) need no permission: the PDS allows
//!   them with bare `atproto`, so asking for an `rpc` permission would add nothing.
//! - Every other method needs `rpc:<nsid>?aud=<atproto-proxy header>` (`aud=*` without header).

use bytes::Bytes;
use serde_json::{Map, Value};

use super::ProxyError;
use crate::atproto::client::{XrpcMethod, XrpcRequest};
use crate::atproto::http::RawBody;
use crate::atproto::permission::{
    allows_blob, allows_repo_write, allows_rpc, required_for_blob, required_for_repo_write, required_for_rpc, Nsid, Permission, RepoAction,
    ServiceRef, TENANT_SCOPE_PREFIX,
};

/// Reads served by the PDS itself to any `atproto` token (observed on the reference PDS with
/// bare `atproto`): allowed without an `rpc` permission when sent without `atproto-proxy`.
pub const OPEN_READS: &[&str] = &[
    "com.atproto.repo.getRecord",
    "com.atproto.repo.listRecords",
    "com.atproto.repo.describeRepo",
    "com.atproto.server.getSession",
    "com.atproto.server.describeServer",
];

const APPLY_WRITES: &str = "com.atproto.repo.applyWrites";
const UPLOAD_BLOB: &str = "com.atproto.repo.uploadBlob";
/// `$type` prefix of the entries of `applyWrites`'s `writes`.
const APPLY_WRITES_ENTRY: &str = "com.atproto.repo.applyWrites#";

/// A call as the app sent it to `/xrpc/{nsid}`.
#[derive(Debug, Clone)]
pub struct XrpcCall {
    pub method: XrpcMethod,
    pub nsid: String,
    /// Raw query string without `?`.
    pub query: String,
    pub body: Bytes,
    pub content_type: Option<String>,
    /// The `atproto-proxy` header (`did:...#service`): which service the PDS forwards to.
    pub atproto_proxy: Option<String>,
    /// The `atproto-accept-labelers` header, passed on as is.
    pub accept_labelers: Option<String>,
}

/// A call allowed to go to the PDS.
#[derive(Debug, Clone)]
pub struct ForwardedCall {
    pub request: XrpcRequest,
    /// For writes: what the audit log records (never content).
    pub write: Option<WriteSummary>,
}

/// The audit view of a write: the method and the collections or MIME type it touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    pub method: String,
    /// `collections=a,b` or `mime=image/png`.
    pub subject: String,
}

/// The atproto permissions in an access token's `scope` (the `atproto:`-prefixed entries;
/// malformed ones, which issuance never lets through, are skipped).
pub fn token_permissions(scope: &str) -> Vec<Permission> {
    scope.split_ascii_whitespace().filter_map(crate::atproto::permission::from_tenant_scope).filter_map(Result::ok).collect()
}

fn insufficient(required: String) -> ProxyError {
    ProxyError::InsufficientScope { required: format!("{TENANT_SCOPE_PREFIX}{required}") }
}

fn invalid(message: impl Into<String>) -> ProxyError {
    ProxyError::InvalidRequest(message.into())
}

/// Checks `call` against `permissions` and builds the request for the user's PDS (`did`'s).
pub fn authorize_call(permissions: &[Permission], did: &str, call: XrpcCall) -> Result<ForwardedCall, ProxyError> {
    if Nsid::parse(&call.nsid).is_none() {
        return Err(invalid(format!("{:?} is not a method name (NSID)", call.nsid.chars().take(100).collect::<String>())));
    }
    let aud = match call.atproto_proxy.as_deref() {
        Some(header) => Some(ServiceRef::parse(header).ok_or_else(|| invalid("atproto-proxy must be did:...#service"))?),
        None => None,
    };
    let mut headers = Vec::new();
    if let Some(aud) = &aud {
        headers.push(("atproto-proxy", aud.as_str().to_owned()));
    }
    if let Some(labelers) = &call.accept_labelers {
        headers.push(("atproto-accept-labelers", labelers.clone()));
    }
    let repo_action = match call.nsid.as_str() {
        "com.atproto.repo.createRecord" => Some(RepoAction::Create),
        "com.atproto.repo.putRecord" => Some(RepoAction::Update),
        "com.atproto.repo.deleteRecord" => Some(RepoAction::Delete),
        _ => None,
    };
    let (body, write) = if repo_action.is_some() || call.nsid == APPLY_WRITES {
        if call.method != XrpcMethod::Post {
            return Err(invalid(format!("{} is a procedure: use POST", call.nsid)));
        }
        let mut body = json_object(&call.body)?;
        let collections = match repo_action {
            Some(action) => {
                let collection = string_field(&body, "collection")?;
                if !allows_repo_write(permissions, &collection, action) {
                    return Err(insufficient(required_for_repo_write(&collection, action)));
                }
                vec![collection]
            }
            None => check_apply_writes(permissions, &body)?,
        };
        body.insert("repo".into(), Value::String(did.to_owned()));
        let bytes = serde_json::to_vec(&body).map_err(|e| invalid(format!("body: {e}")))?;
        let raw = RawBody { bytes: bytes.into(), content_type: "application/json".into() };
        (Some(raw), Some(WriteSummary { method: call.nsid.clone(), subject: format!("collections={}", collections.join(",")) }))
    } else if call.nsid == UPLOAD_BLOB {
        if call.method != XrpcMethod::Post {
            return Err(invalid(format!("{} is a procedure: use POST", call.nsid)));
        }
        let mime = call.content_type.clone().filter(|m| !m.trim().is_empty()).ok_or_else(|| invalid("uploadBlob needs a Content-Type"))?;
        if !allows_blob(permissions, &mime) {
            return Err(insufficient(required_for_blob(&mime)));
        }
        let essence = mime.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        let raw = RawBody { bytes: call.body.clone(), content_type: mime };
        (Some(raw), Some(WriteSummary { method: call.nsid.clone(), subject: format!("mime={essence}") }))
    } else {
        let open_read = call.method == XrpcMethod::Get && aud.is_none() && OPEN_READS.contains(&call.nsid.as_str());
        let aud = aud.as_ref().map(ServiceRef::as_str);
        if !open_read && !allows_rpc(permissions, &call.nsid, aud) {
            return Err(insufficient(required_for_rpc(&call.nsid, aud)));
        }
        let body = (call.method == XrpcMethod::Post).then(|| RawBody {
            bytes: call.body.clone(),
            content_type: call.content_type.clone().unwrap_or_else(|| "application/json".into()),
        });
        (body, None)
    };
    Ok(ForwardedCall { request: XrpcRequest { method: call.method, nsid: call.nsid, query: call.query, body, headers }, write })
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, ProxyError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(invalid("the body must be a JSON object")),
    }
}

fn string_field(object: &Map<String, Value>, name: &str) -> Result<String, ProxyError> {
    object.get(name).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| invalid(format!("{name} (a string) is required")))
}

/// Every write of an `applyWrites` body must be allowed; the first that is not is named.
fn check_apply_writes(permissions: &[Permission], body: &Map<String, Value>) -> Result<Vec<String>, ProxyError> {
    let writes = body.get("writes").and_then(Value::as_array).ok_or_else(|| invalid("writes (an array) is required"))?;
    let mut collections: Vec<String> = Vec::new();
    for write in writes {
        let write = write.as_object().ok_or_else(|| invalid("each write must be an object"))?;
        let kind = string_field(write, "$type")?;
        let action = match kind.strip_prefix(APPLY_WRITES_ENTRY) {
            Some("create") => RepoAction::Create,
            Some("update") => RepoAction::Update,
            Some("delete") => RepoAction::Delete,
            _ => return Err(invalid("each write's $type must be com.atproto.repo.applyWrites#create, #update or #delete")),
        };
        let collection = string_field(write, "collection")?;
        if !allows_repo_write(permissions, &collection, action) {
            return Err(insufficient(required_for_repo_write(&collection, action)));
        }
        if !collections.contains(&collection) {
            collections.push(collection);
        }
    }
    Ok(collections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DID: &str = "did:plc:aliceaaaaaaaaaaaaaaaaaaa";

    fn perms(scopes: &[&str]) -> Vec<Permission> {
        token_permissions(&scopes.join(" "))
    }

    fn post(nsid: &str, body: Value) -> XrpcCall {
        XrpcCall {
            method: XrpcMethod::Post,
            nsid: nsid.into(),
            query: String::new(),
            body: serde_json::to_vec(&body).unwrap().into(),
            content_type: Some("application/json".into()),
            atproto_proxy: None,
            accept_labelers: None,
        }
    }

    fn get(nsid: &str, proxy: Option<&str>) -> XrpcCall {
        XrpcCall {
            method: XrpcMethod::Get,
            body: Bytes::new(),
            content_type: None,
            atproto_proxy: proxy.map(str::to_owned),
            ..post(nsid, json!({}))
        }
    }

    fn required(result: Result<ForwardedCall, ProxyError>) -> String {
        match result {
            Err(ProxyError::InsufficientScope { required }) => required,
            other => panic!("expected insufficient_scope, got {other:?}"),
        }
    }

    fn sent_body(call: &ForwardedCall) -> Value {
        serde_json::from_slice(&call.request.body.as_ref().unwrap().bytes).unwrap()
    }

    #[test]
    fn token_permissions_keep_only_atproto_entries() {
        let p = perms(&["openid", "profile", "atproto:repo:com.example.note?action=create", "atproto:bogus", "atproto"]);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn repo_writes_are_checked_per_collection_and_action() {
        let p = perms(&["atproto:repo:com.example.note?action=create"]);
        let ok = authorize_call(&p, DID, post("com.atproto.repo.createRecord", json!({"collection": "com.example.note", "record": {}})));
        let ok = ok.unwrap();
        assert_eq!(
            ok.write,
            Some(WriteSummary { method: "com.atproto.repo.createRecord".into(), subject: "collections=com.example.note".into() })
        );
        assert_eq!(
            required(authorize_call(&p, DID, post("com.atproto.repo.createRecord", json!({"collection": "com.example.other"})))),
            "atproto:repo:com.example.other?action=create"
        );
        assert_eq!(
            required(authorize_call(&p, DID, post("com.atproto.repo.putRecord", json!({"collection": "com.example.note", "rkey": "a"})))),
            "atproto:repo:com.example.note?action=update"
        );
        assert_eq!(
            required(authorize_call(
                &p,
                DID,
                post("com.atproto.repo.deleteRecord", json!({"collection": "com.example.note", "rkey": "a"}))
            )),
            "atproto:repo:com.example.note?action=delete"
        );
        let all = perms(&["atproto:repo:*"]);
        assert!(authorize_call(&all, DID, post("com.atproto.repo.deleteRecord", json!({"collection": "com.example.x"}))).is_ok());
    }

    #[test]
    fn repo_is_forced_to_the_users_did() {
        let p = perms(&["atproto:repo:com.example.note"]);
        for body in [json!({"collection": "com.example.note"}), json!({"collection": "com.example.note", "repo": "did:plc:someoneelse"})] {
            let call = authorize_call(&p, DID, post("com.atproto.repo.createRecord", body)).unwrap();
            assert_eq!(sent_body(&call)["repo"], DID);
        }
        let writes = json!({"repo": "bob.test", "writes": [{"$type": "com.atproto.repo.applyWrites#create", "collection": "com.example.note", "value": {}}]});
        let call = authorize_call(&p, DID, post("com.atproto.repo.applyWrites", writes)).unwrap();
        assert_eq!(sent_body(&call)["repo"], DID);
    }

    #[test]
    fn apply_writes_needs_every_write() {
        let p = perms(&["atproto:repo:com.example.note?action=create&action=delete", "atproto:repo:com.example.tag?action=create"]);
        let w = |kind: &str, c: &str| json!({"$type": format!("com.atproto.repo.applyWrites#{kind}"), "collection": c, "rkey": "k"});
        let mixed = json!({"writes": [w("create", "com.example.note"), w("delete", "com.example.note"), w("create", "com.example.tag")]});
        let call = authorize_call(&p, DID, post("com.atproto.repo.applyWrites", mixed)).unwrap();
        assert_eq!(call.write.unwrap().subject, "collections=com.example.note,com.example.tag");
        let refused = json!({"writes": [w("create", "com.example.note"), w("update", "com.example.tag")]});
        assert_eq!(
            required(authorize_call(&p, DID, post("com.atproto.repo.applyWrites", refused))),
            "atproto:repo:com.example.tag?action=update"
        );
        let bad_type = json!({"writes": [{"$type": "com.example.evil#create", "collection": "com.example.note"}]});
        assert!(matches!(authorize_call(&p, DID, post("com.atproto.repo.applyWrites", bad_type)), Err(ProxyError::InvalidRequest(_))));
    }

    #[test]
    fn malformed_write_bodies_are_bad_requests() {
        let p = perms(&["atproto:repo:*"]);
        let mut not_json = post("com.atproto.repo.createRecord", json!({}));
        not_json.body = Bytes::from_static(b"{not json");
        assert!(matches!(authorize_call(&p, DID, not_json), Err(ProxyError::InvalidRequest(_))));
        assert!(matches!(authorize_call(&p, DID, post("com.atproto.repo.createRecord", json!([1]))), Err(ProxyError::InvalidRequest(_))));
        assert!(matches!(
            authorize_call(&p, DID, post("com.atproto.repo.createRecord", json!({"collection": 3}))),
            Err(ProxyError::InvalidRequest(_))
        ));
        assert!(matches!(authorize_call(&p, DID, get("com.atproto.repo.createRecord", None)), Err(ProxyError::InvalidRequest(_))));
        // A collection that is not an NSID is never allowed, even by repo:*.
        assert_eq!(
            required(authorize_call(&p, DID, post("com.atproto.repo.createRecord", json!({"collection": "nonsense"})))),
            "atproto:repo:nonsense?action=create"
        );
    }

    #[test]
    fn blobs_are_checked_by_mime_type() {
        let p = perms(&["atproto:blob:image/*"]);
        let blob = |mime: Option<&str>| XrpcCall {
            content_type: mime.map(str::to_owned),
            body: Bytes::from_static(b"\x89PNG"),
            ..post(UPLOAD_BLOB, json!({}))
        };
        let call = authorize_call(&p, DID, blob(Some("image/png"))).unwrap();
        assert_eq!(call.write.unwrap().subject, "mime=image/png");
        assert_eq!(call.request.body.unwrap().bytes.as_ref(), b"\x89PNG");
        assert_eq!(required(authorize_call(&p, DID, blob(Some("video/mp4")))), "atproto:blob:video/mp4");
        assert!(matches!(authorize_call(&p, DID, blob(None)), Err(ProxyError::InvalidRequest(_))));
    }

    #[test]
    fn rpc_needs_the_method_and_audience() {
        let appview = "did:web:api.bsky.app#bsky_appview";
        let p = perms(&[&format!("atproto:rpc:app.bsky.feed.getTimeline?aud={appview}"), "atproto:rpc:com.example.ping?aud=*"]);
        let call = authorize_call(&p, DID, get("app.bsky.feed.getTimeline", Some(appview))).unwrap();
        assert_eq!(call.request.headers, vec![("atproto-proxy", appview.to_owned())]);
        assert_eq!(
            required(authorize_call(&p, DID, get("app.bsky.feed.getTimeline", None))),
            "atproto:rpc:app.bsky.feed.getTimeline?aud=*"
        );
        assert_eq!(
            required(authorize_call(&p, DID, get("app.bsky.feed.getTimeline", Some("did:web:feeds.example.com#svc")))),
            "atproto:rpc:app.bsky.feed.getTimeline?aud=did:web:feeds.example.com%23svc"
        );
        assert!(authorize_call(&p, DID, get("com.example.ping", None)).is_ok());
        assert!(authorize_call(&p, DID, get("com.example.ping", Some("did:web:labels.example.com#x"))).is_ok());
        assert!(matches!(authorize_call(&p, DID, get("com.example.ping", Some("not a service"))), Err(ProxyError::InvalidRequest(_))));
    }

    #[test]
    fn open_reads_need_no_permission_only_at_the_pds() {
        let none: Vec<Permission> = Vec::new();
        for nsid in OPEN_READS {
            assert!(authorize_call(&none, DID, get(nsid, None)).is_ok(), "{nsid}");
        }
        assert_eq!(
            required(authorize_call(&none, DID, get("com.atproto.repo.getRecord", Some("did:web:api.bsky.app#bsky_appview")))),
            "atproto:rpc:com.atproto.repo.getRecord?aud=did:web:api.bsky.app%23bsky_appview"
        );
        assert!(authorize_call(&none, DID, post("com.atproto.server.getSession", json!({}))).is_err());
        assert!(authorize_call(&none, DID, get("com.atproto.server.deleteAccount", None)).is_err());
    }

    #[test]
    fn method_names_are_validated() {
        for nsid in ["", "a", "com.example", "../../oauth/token", "com.example.x?y=1", "com.example.x/y"] {
            assert!(matches!(authorize_call(&[], DID, get(nsid, None)), Err(ProxyError::InvalidRequest(_))), "{nsid}");
        }
    }
}
