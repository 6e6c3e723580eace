//! ATProto permission scopes (the atproto "permission" spec): parsing, canonical form, matching
//! and plain-English descriptions. Pure functions: no I/O, no HTTP, no store.
//!
//! Scope string syntax: `resource[:positional][?key=value&key=value...]`, where the positional
//! value stands for the resource's main parameter (`repo:com.example.post` is
//! `repo?collection=com.example.post`). Values are percent-decoded; in the query `+` is a space,
//! as in `application/x-www-form-urlencoded`.
//!
//! Tenant apps ask for these with the [`TENANT_SCOPE_PREFIX`] (`atproto:repo:...`); atsso sends the
//! unprefixed canonical form ([`Permission`]'s `Display`) to the PDS and stores it.
//!
//! `account` and `identity` permissions are parsed, described and compared ([`covers`]), but the
//! proxy has no check of its own for them: calls to the PDS methods they govern are left to the
//! PDS, which enforces its granted scope.
//!
//! Deliberately left out: resolving `include:` permission sets (that needs a lexicon fetch; an
//! include is only ever covered by the identical include), and the `transition:*` scopes (not
//! permissions; they are refused here as an unknown resource).

use std::{collections::BTreeSet, fmt};

use super::syntax::validate_did;

/// Prefix of tenant-facing scopes that ask for an upstream ATProto permission.
pub const TENANT_SCOPE_PREFIX: &str = "atproto:";

/// Longest permission string accepted (bytes), as written and in canonical form. Real
/// permissions are far shorter; the bound keeps parsing, storage and error texts small.
pub const MAX_PERMISSION_LEN: usize = 1024;

/// Why a permission string was refused. `Display` is meant for an `invalid_scope` description:
/// values are quoted with escapes, so control characters never reach a log line or a page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    #[error("empty permission")]
    Empty,
    #[error("permission is longer than {MAX_PERMISSION_LEN} bytes")]
    TooLong,
    #[error("permission contains a character not allowed in a scope (only printable ASCII without spaces, quotes or backslashes)")]
    BadCharacter,
    #[error("bad percent-encoding in permission")]
    BadPercentEncoding,
    #[error("percent-encoded value is not UTF-8")]
    NotUtf8,
    #[error("unknown resource {0:?} (expected repo, rpc, blob, include, account or identity)")]
    UnknownResource(String),
    #[error("unknown parameter {param} for {resource}")]
    UnknownParameter { resource: &'static str, param: String },
    #[error("{resource} requires {param}")]
    MissingParameter { resource: &'static str, param: &'static str },
    #[error("{param} given more than once")]
    RepeatedParameter { param: &'static str },
    #[error("{param} given both after ':' and as a named parameter")]
    PositionalAndNamed { param: &'static str },
    #[error("empty parameter in the query (two '&' in a row, or a leading '&')")]
    EmptyParameter,
    #[error("parameter {0:?} has no value")]
    NoValue(String),
    #[error("invalid {param} {value:?}: expected {expected}")]
    InvalidValue { param: &'static str, value: String, expected: &'static str },
    #[error("rpc may not allow any method at any service (rpc:*?aud=*)")]
    AnyMethodAnyService,
}

/// A write to a repository record (the `action` of a `repo` permission).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RepoAction {
    Create,
    Update,
    Delete,
}

impl RepoAction {
    /// Every action, in canonical order (also the default of a `repo` permission).
    pub const ALL: [RepoAction; 3] = [RepoAction::Create, RepoAction::Update, RepoAction::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// A syntactically valid NSID (`com.example.post`): at least three segments, the last a name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nsid(String);

impl Nsid {
    pub fn parse(s: &str) -> Option<Nsid> {
        is_valid_nsid(s).then(|| Nsid(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A collection or method name in a permission: one NSID, or `*` for any.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NsidPattern {
    Any,
    Exact(Nsid),
}

impl NsidPattern {
    fn matches(&self, nsid: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(n) => n.as_str() == nsid,
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Self::Any => "*",
            Self::Exact(n) => n.as_str(),
        }
    }
}

/// A MIME type pattern of a `blob` permission, lowercase: `*/*`, `type/*` or `type/subtype`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MimePattern(String);

impl MimePattern {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Does this pattern admit the concrete, lowercase MIME type `mime`?
    fn matches(&self, mime: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some("*/") => true,
            Some(type_slash) => mime.starts_with(type_slash),
            None => self.0 == mime,
        }
    }

    /// Does this pattern admit everything `other` admits?
    fn includes(&self, other: &MimePattern) -> bool {
        match other.0.strip_suffix('*') {
            Some("*/") => self.0 == "*/*",
            Some(_) => self.0 == "*/*" || self.0 == other.0,
            None => self.matches(&other.0),
        }
    }
}

/// An absolute service reference `did:plc:...#fragment` or `did:web:...#fragment` (the form of
/// the `atproto-proxy` header), as the `aud` of `rpc` and `include` permissions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceRef(String);

impl ServiceRef {
    pub fn parse(s: &str) -> Option<ServiceRef> {
        let (did, fragment) = s.split_once('#')?;
        let bytes = fragment.as_bytes();
        let escapes_ok = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'%')
            .all(|(i, _)| bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)));
        let fragment_ok = !bytes.is_empty() && bytes.iter().copied().all(is_fragment_byte) && escapes_ok;
        (fragment_ok && validate_did(did).is_ok()).then(|| ServiceRef(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The service an `rpc` permission may call: one service, or `*` for any.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Audience {
    Any,
    Service(ServiceRef),
}

/// What an `account` permission is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccountAttr {
    Email,
    Repo,
    Status,
}

impl AccountAttr {
    const ALL: [AccountAttr; 3] = [AccountAttr::Email, AccountAttr::Repo, AccountAttr::Status];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Repo => "repo",
            Self::Status => "status",
        }
    }
}

/// `read` or `manage` (which includes read) of an `account` permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccountAction {
    Read,
    Manage,
}

impl AccountAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Manage => "manage",
        }
    }
}

/// What an `identity` permission is about: the handle, or `*` (handle and DID document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdentityAttr {
    Handle,
    Any,
}

impl IdentityAttr {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Handle => "handle",
            Self::Any => "*",
        }
    }
}

/// One atproto permission. Built by [`Permission::parse`], which normalizes it: sets are
/// non-empty and a `*` in a set stands alone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Write records of these collections (`*`: any) with these actions.
    Repo { collections: BTreeSet<NsidPattern>, actions: BTreeSet<RepoAction> },
    /// Call these methods (`*`: any) at this service (`*`: any; not both `*`).
    Rpc { lxms: BTreeSet<NsidPattern>, aud: Audience },
    /// Upload blobs of these MIME types.
    Blob { accept: BTreeSet<MimePattern> },
    /// A permission set published as a lexicon (not resolved here).
    Include { nsid: Nsid, aud: Option<ServiceRef> },
    /// Account hosting details.
    Account { attr: AccountAttr, action: AccountAction },
    /// The handle or the whole identity.
    Identity { attr: IdentityAttr },
}

impl Permission {
    /// Parse one permission in the atproto scope syntax (without the tenant prefix) and normalize
    /// it. Every refusal says what is wrong.
    pub fn parse(input: &str) -> Result<Permission, PermissionError> {
        let raw = RawScope::split(input)?;
        let permission = match raw.resource {
            "repo" => raw.into_repo(),
            "rpc" => raw.into_rpc(),
            "blob" => raw.into_blob(),
            "include" => raw.into_include(),
            "account" => raw.into_account(),
            "identity" => raw.into_identity(),
            other => Err(PermissionError::UnknownResource(other.to_string())),
        }?;
        // Encoding can lengthen a value; what we store and send must parse again.
        if permission.to_string().len() > MAX_PERMISSION_LEN {
            return Err(PermissionError::TooLong);
        }
        Ok(permission)
    }

    /// The tenant-facing scope: [`TENANT_SCOPE_PREFIX`] + the canonical form.
    pub fn to_tenant_scope(&self) -> String {
        format!("{TENANT_SCOPE_PREFIX}{self}")
    }
}

/// The canonical form: the main parameter positional when it has one value, other parameters
/// in a fixed order, defaults left out, values percent-encoded where the syntax needs it.
impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (resource, main_key, main, extra): (&str, &str, Vec<&str>, Vec<(&str, &str)>) = match self {
            Self::Repo { collections, actions } => {
                let extra = if actions.len() == RepoAction::ALL.len() {
                    Vec::new()
                } else {
                    actions.iter().map(|a| ("action", a.as_str())).collect()
                };
                ("repo", "collection", collections.iter().map(NsidPattern::as_str).collect(), extra)
            }
            Self::Rpc { lxms, aud } => {
                let aud = match aud {
                    Audience::Any => "*",
                    Audience::Service(s) => s.as_str(),
                };
                ("rpc", "lxm", lxms.iter().map(NsidPattern::as_str).collect(), vec![("aud", aud)])
            }
            Self::Blob { accept } => ("blob", "accept", accept.iter().map(MimePattern::as_str).collect(), Vec::new()),
            Self::Include { nsid, aud } => ("include", "nsid", vec![nsid.as_str()], aud.iter().map(|a| ("aud", a.as_str())).collect()),
            Self::Account { attr, action } => {
                let extra = match action {
                    AccountAction::Read => Vec::new(),
                    AccountAction::Manage => vec![("action", action.as_str())],
                };
                ("account", "attr", vec![attr.as_str()], extra)
            }
            Self::Identity { attr } => ("identity", "attr", vec![attr.as_str()], Vec::new()),
        };
        f.write_str(resource)?;
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let [only] = main.as_slice() {
            write!(f, ":{}", encode(only, false))?;
        } else {
            query.extend(main.iter().map(|v| (main_key, *v)));
        }
        query.extend(extra);
        for (i, (key, value)) in query.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            write!(f, "{sep}{key}={}", encode(value, true))?;
        }
        Ok(())
    }
}

/// `Some` when `scope` is a tenant-facing atproto permission (`atproto:...`), with the parsed
/// permission or why it is invalid; `None` for any other scope (`openid`, `atproto`...).
pub fn from_tenant_scope(scope: &str) -> Option<Result<Permission, PermissionError>> {
    scope.strip_prefix(TENANT_SCOPE_PREFIX).map(Permission::parse)
}

/// The permissions in a space-separated scope string as granted by a PDS. Tokens that are not
/// permissions (`atproto`, `transition:generic`, anything unknown) are skipped: only what a
/// permission check can use is kept.
pub fn permissions_in(scope: &str) -> Vec<Permission> {
    scope.split_ascii_whitespace().filter_map(|token| Permission::parse(token).ok()).collect()
}

/// May a caller holding `perms` write (`action`) a record of `collection`? A collection that is
/// not a valid NSID is never allowed, not even by `repo:*`.
pub fn allows_repo_write(perms: &[Permission], collection: &str, action: RepoAction) -> bool {
    is_valid_nsid(collection)
        && perms.iter().any(|p| match p {
            Permission::Repo { collections, actions } => actions.contains(&action) && collections.iter().any(|c| c.matches(collection)),
            _ => false,
        })
}

/// May a caller holding `perms` upload a blob whose `Content-Type` is `mime`? The type is
/// compared case-insensitively and without parameters (`; charset=...`); a value that is not a
/// concrete `type/subtype` is never allowed.
pub fn allows_blob(perms: &[Permission], mime: &str) -> bool {
    let Some(mime) = concrete_mime(mime) else {
        return false;
    };
    perms.iter().any(|p| match p {
        Permission::Blob { accept } => accept.iter().any(|a| a.matches(&mime)),
        _ => false,
    })
}

/// May a caller holding `perms` call method `lxm` at service `aud` (the `atproto-proxy` header
/// value, `did:...#service`)? Without the header (`None`) the PDS picks the service, so only
/// permissions with `aud=*` allow the call.
pub fn allows_rpc(perms: &[Permission], lxm: &str, aud: Option<&str>) -> bool {
    is_valid_nsid(lxm)
        && perms.iter().any(|p| match p {
            Permission::Rpc { lxms, aud: allowed } => {
                let aud_ok = match allowed {
                    Audience::Any => true,
                    Audience::Service(s) => aud == Some(s.as_str()),
                };
                aud_ok && lxms.iter().any(|l| l.matches(lxm))
            }
            _ => false,
        })
}

/// The canonical permission a refused repo write needed (for `403 insufficient_scope`).
pub fn required_for_repo_write(collection: &str, action: RepoAction) -> String {
    format!("repo:{}?action={}", encode(collection, false), action.as_str())
}

/// The canonical permission a refused blob upload needed.
pub fn required_for_blob(mime: &str) -> String {
    let mime = concrete_mime(mime).unwrap_or_else(|| mime.to_string());
    format!("blob:{}", encode(&mime, false))
}

/// The canonical permission a refused call needed (`aud=*` when there was no proxy header).
pub fn required_for_rpc(lxm: &str, aud: Option<&str>) -> String {
    format!("rpc:{}?aud={}", encode(lxm, false), encode(aud.unwrap_or("*"), true))
}

/// Do the `granted` permissions together allow everything `requested` allows? Used to check an
/// app's request against what the admin allowed for the client, and whether the upstream grant
/// needs a step-up. Wildcards cover specific values (never the reverse); each requested
/// collection/method/MIME type and action may be covered by a different granted permission.
/// An `include:` is covered only by the identical include (its contents are not resolved).
pub fn covers(granted: &[Permission], requested: &Permission) -> bool {
    match requested {
        Permission::Repo { collections, actions } => collections.iter().all(|c| {
            actions.iter().all(|a| {
                granted.iter().any(|g| match g {
                    Permission::Repo { collections: gc, actions: ga } => ga.contains(a) && pattern_includes(gc, c),
                    _ => false,
                })
            })
        }),
        Permission::Rpc { lxms, aud } => lxms.iter().all(|l| {
            granted.iter().any(|g| match g {
                Permission::Rpc { lxms: gl, aud: ga } => (*ga == Audience::Any || ga == aud) && pattern_includes(gl, l),
                _ => false,
            })
        }),
        Permission::Blob { accept } => accept.iter().all(|m| {
            granted.iter().any(|g| match g {
                Permission::Blob { accept: ga } => ga.iter().any(|p| p.includes(m)),
                _ => false,
            })
        }),
        Permission::Include { .. } => granted.contains(requested),
        Permission::Account { attr, action } => granted.iter().any(|g| match g {
            Permission::Account { attr: ga, action: gact } => ga == attr && gact >= action,
            _ => false,
        }),
        Permission::Identity { attr } => granted.iter().any(|g| match g {
            Permission::Identity { attr: ga } => *ga == IdentityAttr::Any || ga == attr,
            _ => false,
        }),
    }
}

/// The `requested` permissions that `granted` does not cover, in order.
pub fn uncovered<'a>(granted: &[Permission], requested: &'a [Permission]) -> Vec<&'a Permission> {
    requested.iter().filter(|r| !covers(granted, r)).collect()
}

/// What a permission allows, in plain English for the consent page (plain text; the template
/// escapes it).
pub fn describe(permission: &Permission) -> String {
    match permission {
        Permission::Repo { collections, actions } => {
            let verbs = join_words(actions.iter().map(|a| a.as_str()).collect(), "and");
            let records = if collections.contains(&NsidPattern::Any) {
                "records of any type".to_string()
            } else {
                let names: Vec<&str> = collections.iter().map(NsidPattern::as_str).collect();
                let noun = if names.len() == 1 { "type" } else { "types" };
                format!("records of {noun} {}", join_words(names, "and"))
            };
            format!("{verbs} {records} in your repository")
        }
        Permission::Rpc { lxms, aud } => {
            let methods = if lxms.contains(&NsidPattern::Any) {
                "any method".to_string()
            } else {
                join_words(lxms.iter().map(NsidPattern::as_str).collect(), "and")
            };
            let service = match aud {
                Audience::Any => "any service",
                Audience::Service(s) => s.as_str(),
            };
            format!("call {methods} at {service}")
        }
        Permission::Blob { accept } => {
            if accept.iter().any(|m| m.as_str() == "*/*") {
                "upload files of any type".to_string()
            } else {
                format!("upload files of type {}", join_words(accept.iter().map(MimePattern::as_str).collect(), "or"))
            }
        }
        Permission::Include { nsid, aud } => match aud {
            None => format!("use the permission set {}", nsid.as_str()),
            Some(aud) => format!("use the permission set {} with {}", nsid.as_str(), aud.as_str()),
        },
        Permission::Account { attr, action } => {
            let verb = match action {
                AccountAction::Read => "see",
                AccountAction::Manage => "see and change",
            };
            let object = match attr {
                AccountAttr::Email => "your account's email address",
                AccountAttr::Repo => "your whole repository (as when importing it)",
                AccountAttr::Status => "your account's hosting status",
            };
            format!("{verb} {object}")
        }
        Permission::Identity { attr } => match attr {
            IdentityAttr::Handle => "change your handle".to_string(),
            IdentityAttr::Any => "change your handle and DID document".to_string(),
        },
    }
}

/// "a", "a and b", "a, b and c".
fn join_words(words: Vec<&str>, conjunction: &str) -> String {
    match words.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} {conjunction} {last}", rest.join(", ")),
    }
}

/// Does the set of granted patterns admit everything `requested` names?
fn pattern_includes(granted: &BTreeSet<NsidPattern>, requested: &NsidPattern) -> bool {
    granted.contains(&NsidPattern::Any) || (*requested != NsidPattern::Any && granted.contains(requested))
}

/// A permission string split into its parts, values percent-decoded.
struct RawScope<'a> {
    resource: &'a str,
    positional: Option<String>,
    params: Vec<(String, String)>,
}

impl<'a> RawScope<'a> {
    fn split(input: &'a str) -> Result<RawScope<'a>, PermissionError> {
        if input.is_empty() {
            return Err(PermissionError::Empty);
        }
        if input.len() > MAX_PERMISSION_LEN {
            return Err(PermissionError::TooLong);
        }
        if !input.bytes().all(is_scope_byte) {
            return Err(PermissionError::BadCharacter);
        }
        let resource_end = input.find([':', '?']).unwrap_or(input.len());
        let (resource, rest) = input.split_at(resource_end);
        let (positional, query) = match rest.strip_prefix(':') {
            Some(after) => match after.split_once('?') {
                Some((positional, query)) => (Some(positional), query),
                None => (Some(after), ""),
            },
            None => (None, rest.strip_prefix('?').unwrap_or("")),
        };
        let positional = positional.map(|p| percent_decode(p, false)).transpose()?;
        let mut params = Vec::new();
        if !query.is_empty() {
            for pair in query.split('&') {
                if pair.is_empty() {
                    return Err(PermissionError::EmptyParameter);
                }
                let Some((key, value)) = pair.split_once('=') else {
                    return Err(PermissionError::NoValue(percent_decode(pair, true)?));
                };
                params.push((percent_decode(key, true)?, percent_decode(value, true)?));
            }
        }
        Ok(RawScope { resource, positional, params })
    }

    fn only_keys(&self, resource: &'static str, allowed: &[&str]) -> Result<(), PermissionError> {
        match self.params.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((k, _)) => Err(PermissionError::UnknownParameter { resource, param: k.clone() }),
            None => Ok(()),
        }
    }

    /// Every value of `key`; the positional value stands for `key` when `positional` is set.
    fn values(&self, key: &'static str, positional: bool) -> Result<Vec<&str>, PermissionError> {
        let named: Vec<&str> = self.params.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect();
        match (&self.positional, positional) {
            (Some(_), true) if !named.is_empty() => Err(PermissionError::PositionalAndNamed { param: key }),
            (Some(value), true) => Ok(vec![value.as_str()]),
            _ => Ok(named),
        }
    }

    fn required_values(&self, resource: &'static str, key: &'static str, positional: bool) -> Result<Vec<&str>, PermissionError> {
        let values = self.values(key, positional)?;
        if values.is_empty() {
            return Err(PermissionError::MissingParameter { resource, param: key });
        }
        Ok(values)
    }

    fn single(&self, key: &'static str, positional: bool) -> Result<Option<&str>, PermissionError> {
        match self.values(key, positional)?.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            _ => Err(PermissionError::RepeatedParameter { param: key }),
        }
    }

    fn required_single(&self, resource: &'static str, key: &'static str, positional: bool) -> Result<&str, PermissionError> {
        self.single(key, positional)?.ok_or(PermissionError::MissingParameter { resource, param: key })
    }

    fn into_repo(self) -> Result<Permission, PermissionError> {
        self.only_keys("repo", &["collection", "action"])?;
        let collections =
            nsid_patterns(self.required_values("repo", "collection", true)?, "collection", "an NSID like com.example.post, or *")?;
        let mut actions = BTreeSet::new();
        for value in self.values("action", false)? {
            let action = RepoAction::from_name(value).ok_or_else(|| invalid("action", value, "create, update or delete"))?;
            actions.insert(action);
        }
        if actions.is_empty() {
            actions.extend(RepoAction::ALL);
        }
        Ok(Permission::Repo { collections, actions })
    }

    fn into_rpc(self) -> Result<Permission, PermissionError> {
        self.only_keys("rpc", &["lxm", "aud"])?;
        let lxms = nsid_patterns(self.required_values("rpc", "lxm", true)?, "lxm", "an NSID like app.bsky.feed.getTimeline, or *")?;
        let aud = match self.required_single("rpc", "aud", false)? {
            "*" => Audience::Any,
            value => Audience::Service(service_ref(value, "a service like did:web:api.bsky.app#bsky_appview, or *")?),
        };
        if aud == Audience::Any && lxms.contains(&NsidPattern::Any) {
            return Err(PermissionError::AnyMethodAnyService);
        }
        Ok(Permission::Rpc { lxms, aud })
    }

    fn into_blob(self) -> Result<Permission, PermissionError> {
        self.only_keys("blob", &["accept"])?;
        let mut accept = BTreeSet::new();
        for value in self.required_values("blob", "accept", true)? {
            let pattern = mime_pattern(value).ok_or_else(|| invalid("accept", value, "a MIME type like image/png, image/* or */*"))?;
            accept.insert(pattern);
        }
        // Keep the shortest equivalent set: `*/*` alone, and no exact type under a `type/*`.
        let any = MimePattern("*/*".to_string());
        if accept.contains(&any) {
            return Ok(Permission::Blob { accept: BTreeSet::from([any]) });
        }
        let wildcards: Vec<MimePattern> = accept.iter().filter(|m| m.0.ends_with("/*")).cloned().collect();
        accept.retain(|m| m.0.ends_with("/*") || !wildcards.iter().any(|w| w.matches(&m.0)));
        Ok(Permission::Blob { accept })
    }

    fn into_include(self) -> Result<Permission, PermissionError> {
        self.only_keys("include", &["nsid", "aud"])?;
        let value = self.required_single("include", "nsid", true)?;
        let nsid = Nsid::parse(value).ok_or_else(|| invalid("nsid", value, "the NSID of a permission set, like com.example.authFull"))?;
        let aud = match self.single("aud", false)? {
            None => None,
            Some(value) => Some(service_ref(value, "a service like did:web:api.example.com#service")?),
        };
        Ok(Permission::Include { nsid, aud })
    }

    fn into_account(self) -> Result<Permission, PermissionError> {
        self.only_keys("account", &["attr", "action"])?;
        let value = self.required_single("account", "attr", true)?;
        let attr =
            AccountAttr::ALL.into_iter().find(|a| a.as_str() == value).ok_or_else(|| invalid("attr", value, "email, repo or status"))?;
        let mut action = AccountAction::Read;
        for value in self.values("action", false)? {
            match value {
                "read" => {}
                "manage" => action = AccountAction::Manage,
                _ => return Err(invalid("action", value, "read or manage")),
            }
        }
        Ok(Permission::Account { attr, action })
    }

    fn into_identity(self) -> Result<Permission, PermissionError> {
        self.only_keys("identity", &["attr"])?;
        let attr = match self.required_single("identity", "attr", true)? {
            "handle" => IdentityAttr::Handle,
            "*" => IdentityAttr::Any,
            value => return Err(invalid("attr", value, "handle or *")),
        };
        Ok(Permission::Identity { attr })
    }
}

fn invalid(param: &'static str, value: &str, expected: &'static str) -> PermissionError {
    PermissionError::InvalidValue { param, value: value.to_string(), expected }
}

/// NSIDs or `*`; a `*` makes the others redundant.
fn nsid_patterns(values: Vec<&str>, param: &'static str, expected: &'static str) -> Result<BTreeSet<NsidPattern>, PermissionError> {
    let mut patterns = BTreeSet::new();
    for value in values {
        let pattern = match value {
            "*" => NsidPattern::Any,
            _ => NsidPattern::Exact(Nsid::parse(value).ok_or_else(|| invalid(param, value, expected))?),
        };
        patterns.insert(pattern);
    }
    if patterns.contains(&NsidPattern::Any) {
        return Ok(BTreeSet::from([NsidPattern::Any]));
    }
    Ok(patterns)
}

fn service_ref(value: &str, expected: &'static str) -> Result<ServiceRef, PermissionError> {
    ServiceRef::parse(value).ok_or_else(|| invalid("aud", value, expected))
}

/// NSID syntax (atproto spec): ≤ 317 characters, ≥ 3 dot-separated segments of 1..63
/// characters; domain segments of letters, digits and inner hyphens, the first starting with a
/// letter; the last segment (the name) letters and digits, starting with a letter.
fn is_valid_nsid(s: &str) -> bool {
    if s.len() > 317 {
        return false;
    }
    let segments: Vec<&str> = s.split('.').collect();
    let Some((name, authority)) = segments.split_last() else {
        return false;
    };
    let authority_ok = authority.iter().enumerate().all(|(i, seg)| {
        let b = seg.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
            && (i > 0 || b[0].is_ascii_alphabetic())
    });
    let name_ok =
        name.len() <= 63 && name.bytes().next().is_some_and(|c| c.is_ascii_alphabetic()) && name.bytes().all(|c| c.is_ascii_alphanumeric());
    segments.len() >= 3 && authority_ok && name_ok
}

/// `*/*`, `type/*` or `type/subtype` (RFC 6838 names), lowercased.
fn mime_pattern(value: &str) -> Option<MimePattern> {
    let lower = value.to_ascii_lowercase();
    let (kind, subtype) = lower.split_once('/')?;
    let ok = match (kind, subtype) {
        ("*", "*") => true,
        ("*", _) => false,
        (kind, "*") => is_mime_name(kind),
        (kind, subtype) => is_mime_name(kind) && is_mime_name(subtype),
    };
    ok.then_some(MimePattern(lower))
}

/// RFC 6838 restricted-name: an alphanumeric, then up to 126 of alphanumerics and `!#$&-^_.+`.
fn is_mime_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 127
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(c))
}

/// The concrete lowercase MIME type of a `Content-Type` value (parameters dropped), if it is one.
fn concrete_mime(content_type: &str) -> Option<String> {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    mime_pattern(essence).filter(|m| !m.0.contains('*')).map(|m| m.0)
}

/// Characters of an OAuth scope token (RFC 6749 §3.3): printable ASCII except space, `"`, `\`.
fn is_scope_byte(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

/// RFC 3986 fragment characters (pchar, `/`, `?`); `%` is checked by the caller.
fn is_fragment_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)
}

fn percent_decode(s: &str, plus_is_space: bool) -> Result<String, PermissionError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let escaped = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                out.push(escaped.ok_or(PermissionError::BadPercentEncoding)?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| PermissionError::NotUtf8)
}

/// Percent-encode what would change the meaning of a scope: anything outside the unreserved
/// characters and `*:/@,!$'()`, and `+` inside the query (where it would decode as a space).
fn encode(value: &str, in_query: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~*:/@,!$'()".contains(&b) || (b == b'+' && !in_query);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn p(s: &str) -> Permission {
        Permission::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn perms(list: &[&str]) -> Vec<Permission> {
        list.iter().map(|s| p(s)).collect()
    }

    const TIMELINE_AUD: &str = "did:web:api.bsky.app#bsky_appview";

    #[test]
    fn valid_permissions_have_a_canonical_form() {
        for (input, canonical) in [
            ("repo:com.example.post", "repo:com.example.post"),
            ("repo?collection=com.example.post", "repo:com.example.post"),
            ("repo:com.example.post?action=create", "repo:com.example.post?action=create"),
            ("repo:com.example.post?action=delete&action=create", "repo:com.example.post?action=create&action=delete"),
            ("repo:com.example.post?action=create&action=update&action=delete", "repo:com.example.post"),
            ("repo:com.example.post?action=create&action=create", "repo:com.example.post?action=create"),
            ("repo?collection=com.example.post&action=update", "repo:com.example.post?action=update"),
            ("repo?action=update&collection=com.example.post", "repo:com.example.post?action=update"),
            ("repo:*", "repo:*"),
            ("repo:*?action=create", "repo:*?action=create"),
            ("repo?collection=com.example.b&collection=com.example.a", "repo?collection=com.example.a&collection=com.example.b"),
            ("repo?collection=com.example.a&collection=*", "repo:*"),
            ("repo?collection=com.example.a&collection=com.example.a", "repo:com.example.a"),
            ("repo:com.example.post?", "repo:com.example.post"),
            ("repo:com%2Eexample.post", "repo:com.example.post"),
            ("repo:com.example-site.post", "repo:com.example-site.post"),
            (
                "rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview",
                "rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview",
            ),
            (
                "rpc?lxm=app.bsky.feed.getTimeline&aud=did:web:api.bsky.app%23bsky_appview",
                "rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview",
            ),
            ("rpc:app.bsky.feed.getTimeline?aud=*", "rpc:app.bsky.feed.getTimeline?aud=*"),
            ("rpc:*?aud=did:web:api.bsky.app%23bsky_appview", "rpc:*?aud=did:web:api.bsky.app%23bsky_appview"),
            ("rpc?aud=*&lxm=com.example.b&lxm=com.example.a", "rpc?lxm=com.example.a&lxm=com.example.b&aud=*"),
            ("rpc?aud=did:web:x.test%23svc&lxm=com.example.b&lxm=*", "rpc:*?aud=did:web:x.test%23svc"),
            (
                "rpc:com.example.get?aud=did:plc:z72i7hdynmk6r22z27h6tvur%23svc",
                "rpc:com.example.get?aud=did:plc:z72i7hdynmk6r22z27h6tvur%23svc",
            ),
            ("blob:image/*", "blob:image/*"),
            ("blob:*/*", "blob:*/*"),
            ("blob:IMAGE/PNG", "blob:image/png"),
            ("blob?accept=video/mp4&accept=image/*", "blob?accept=image/*&accept=video/mp4"),
            ("blob?accept=image/png&accept=image/*", "blob:image/*"),
            ("blob?accept=image/png&accept=*/*", "blob:*/*"),
            ("blob:image/svg+xml", "blob:image/svg+xml"),
            ("blob?accept=image/svg%2Bxml&accept=video/mp4", "blob?accept=image/svg%2Bxml&accept=video/mp4"),
            ("include:com.example.authFull", "include:com.example.authFull"),
            ("include?nsid=com.example.authFull", "include:com.example.authFull"),
            (
                "include:com.example.authFull?aud=did:web:api.example.com%23svc",
                "include:com.example.authFull?aud=did:web:api.example.com%23svc",
            ),
            ("account:email", "account:email"),
            ("account?attr=email", "account:email"),
            ("account:email?action=read", "account:email"),
            ("account:status?action=manage", "account:status?action=manage"),
            ("account:repo?action=read&action=manage", "account:repo?action=manage"),
            ("identity:handle", "identity:handle"),
            ("identity:*", "identity:*"),
        ] {
            let parsed = p(input);
            assert_eq!(parsed.to_string(), canonical, "canonical form of {input:?}");
            let again = p(canonical);
            assert_eq!(again, parsed, "{canonical:?} parses back to the same permission");
            assert_eq!(again.to_string(), canonical, "{canonical:?} is a fixed point");
        }
    }

    #[test]
    fn invalid_permissions_are_refused_with_a_reason() {
        let long = format!("repo:com.example.post?{}", "action=create&".repeat(100));
        for (input, reason) in [
            ("", "empty"),
            ("repo", "requires collection"),
            ("repo:", "collection"),
            ("repo?", "requires collection"),
            ("repo:com.example.post?action=publish", "action"),
            ("repo:com.example.post?action=*", "action"),
            ("repo:com.example.post?collection=com.example.other", "both"),
            ("repo:com.example.post?foo=bar", "unknown parameter foo"),
            ("repo:invalid", "NSID"),
            ("repo:.foo", "NSID"),
            ("repo:com.example.", "NSID"),
            ("repo:com..example.post", "NSID"),
            ("repo:1com.example.post", "NSID"),
            ("repo:com.example.1post", "NSID"),
            ("repo:com.example.po-st", "NSID"),
            ("repo:com.example.post?action", "no value"),
            ("repo:com.example.post?action=", "action"),
            ("repo:com.example.post?&action=create", "empty parameter"),
            ("repo:com.example.post?action=create&&action=update", "empty parameter"),
            ("repo:com%zzexample.post", "percent"),
            ("repo:com.example.post%", "percent"),
            ("repo:com.example.post%2", "percent"),
            ("repo:com.example.post%FF", "UTF-8"),
            ("repo:com.example.post ", "character"),
            ("repo:com.example.p\u{e9}st", "character"),
            ("repo:com.example.post\n", "character"),
            ("repo:com.example.post\"", "character"),
            ("repo:com.example%20post", "NSID"),
            ("write:com.example.post", "unknown resource"),
            ("Repo:com.example.post", "unknown resource"),
            (":com.example.post", "unknown resource"),
            ("?collection=com.example.post", "unknown resource"),
            ("transition:generic", "unknown resource"),
            ("atproto", "unknown resource"),
            ("rpc:app.bsky.feed.getTimeline", "requires aud"),
            ("rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app", "aud"),
            ("rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23", "aud"),
            ("rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23a%23b", "aud"),
            ("rpc:app.bsky.feed.getTimeline?aud=did:foo:bar%23x", "aud"),
            ("rpc:app.bsky.feed.getTimeline?aud=did:plc:111%23x", "aud"),
            ("rpc:app.bsky.feed.getTimeline?aud=*&aud=*", "more than once"),
            ("rpc:*?aud=*", "any method at any service"),
            ("rpc?lxm=*&aud=*", "any method at any service"),
            ("rpc:?aud=*", "lxm"),
            ("rpc:foo.bar?aud=*", "NSID"),
            ("blob", "requires accept"),
            ("blob:image", "MIME"),
            ("blob:image/", "MIME"),
            ("blob:/png", "MIME"),
            ("blob:image/png/x", "MIME"),
            ("blob:*/png", "MIME"),
            ("blob:image/p*", "MIME"),
            ("blob:image/png;q=1", "MIME"),
            ("blob:image/png?action=create", "unknown parameter action"),
            ("include:*", "NSID"),
            ("include:com.example.authFull?aud=*", "aud"),
            ("include:com.example.authFull?aud=did:web:a.test%23x&aud=did:web:b.test%23x", "more than once"),
            ("account:password", "attr"),
            ("account:email?action=write", "action"),
            ("account:email&attr=status", "attr"),
            ("identity:did", "attr"),
            ("identity:handle?action=manage", "unknown parameter action"),
            (long.as_str(), "longer than"),
        ] {
            match Permission::parse(input) {
                Ok(ok) => panic!("{input:?} should be refused, parsed as {ok}"),
                Err(e) => assert!(e.to_string().contains(reason), "{input:?}: {e:?} ({e}) should mention {reason:?}"),
            }
        }
    }

    #[test]
    fn a_permission_whose_canonical_form_is_too_long_is_refused() {
        // `^` is kept as written but percent-encoded in the canonical form (three times longer).
        let accepts: Vec<String> = (0..7).map(|i| format!("accept=a/b{i}{}", "^".repeat(120))).collect();
        let input = format!("blob?{}", accepts.join("&"));
        assert!(input.len() <= MAX_PERMISSION_LEN);
        let e = Permission::parse(&input).unwrap_err();
        assert_eq!(e, PermissionError::TooLong);
        assert_eq!(p("blob:a/b^c").to_string(), "blob:a/b%5Ec", "a short one is fine");
    }

    #[test]
    fn error_messages_do_not_echo_control_characters() {
        let e = Permission::parse("repo:com.example%0Apost").unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e:?}");
        assert!(e.contains("NSID"), "{e:?}");
    }

    #[test]
    fn parse_never_panics_on_odd_input() {
        let long = "r".repeat(5000);
        let long_valid_prefix = format!("repo:{}", "a.".repeat(600));
        let odd = [
            "",
            ":",
            "?",
            "&",
            "=",
            "%",
            "%%",
            "%zz",
            ":?",
            "?:",
            "::",
            "??",
            "repo::",
            "repo:?",
            "repo?:",
            "repo:%",
            "repo?=",
            "repo?==",
            "repo?collection",
            "repo?collection==x",
            "rpc?aud",
            "blob:%2F",
            "blob:/",
            "blob:*",
            "blob:**",
            "include:",
            "include?",
            "account:",
            "identity:",
            "🦀",
            "repo:🦀",
            "repo:com.example.🦀",
            "\u{0}",
            "repo:\u{0}",
            "repo:%00",
            "repo:%C3%A9",
            "repo:%C3",
            "repo:%E2%82",
            "blob:image/%2A",
            "rpc:a.b.c?aud=%23",
            "rpc:a.b.c?aud=did%3Aweb",
            long.as_str(),
            long_valid_prefix.as_str(),
        ];
        for s in odd {
            let _ = Permission::parse(s);
            let _ = from_tenant_scope(s);
            let _ = allows_blob(&[], s);
            let _ = allows_rpc(&[], s, Some(s));
            let _ = required_for_blob(s);
            let _ = required_for_rpc(s, Some(s));
            let _ = required_for_repo_write(s, RepoAction::Create);
        }
    }

    #[test]
    fn tenant_scopes_carry_the_prefix() {
        assert!(from_tenant_scope("openid").is_none());
        assert!(from_tenant_scope("atproto").is_none(), "the bare atproto scope is not a permission");
        assert!(from_tenant_scope("repo:com.example.post").is_none(), "unprefixed permissions are not tenant scopes");
        let parsed = from_tenant_scope("atproto:repo:com.example.post?action=create").unwrap().unwrap();
        assert_eq!(parsed, p("repo:com.example.post?action=create"));
        assert_eq!(parsed.to_tenant_scope(), "atproto:repo:com.example.post?action=create");
        assert!(from_tenant_scope("atproto:repo:nope").unwrap().is_err());
        assert!(from_tenant_scope("atproto:").unwrap().is_err());
    }

    #[test]
    fn granted_scope_strings_keep_the_permissions_only() {
        let granted = permissions_in("atproto repo:com.example.note?action=create transition:generic blob:image/* bogus:x");
        assert_eq!(granted, perms(&["repo:com.example.note?action=create", "blob:image/*"]));
        assert!(permissions_in("").is_empty());
        assert!(permissions_in("  atproto  ").is_empty());
    }

    #[test]
    fn repo_writes_are_allowed_by_collection_and_action() {
        let granted = perms(&["repo:com.example.post?action=create", "repo:*?action=delete"]);
        assert!(allows_repo_write(&granted, "com.example.post", RepoAction::Create));
        assert!(!allows_repo_write(&granted, "com.example.post", RepoAction::Update));
        assert!(!allows_repo_write(&granted, "com.example.other", RepoAction::Create));
        assert!(allows_repo_write(&granted, "com.example.other", RepoAction::Delete), "repo:* matches any collection");
        assert!(!allows_repo_write(&granted, "not an nsid", RepoAction::Delete), "a wildcard never admits an invalid collection");
        assert!(!allows_repo_write(&[], "com.example.post", RepoAction::Create));
        let other_resources = perms(&["blob:*/*", "rpc:*?aud=did:web:pds.test%23atproto_pds", "include:com.example.authFull"]);
        assert!(!allows_repo_write(&other_resources, "com.example.post", RepoAction::Create));
        assert!(allows_repo_write(&perms(&["repo:com.example.post"]), "com.example.post", RepoAction::Update), "default actions");
    }

    #[test]
    fn blobs_are_allowed_by_mime_type() {
        let images = perms(&["blob:image/*"]);
        assert!(allows_blob(&images, "image/png"));
        assert!(allows_blob(&images, "Image/PNG"), "MIME types are case-insensitive");
        assert!(allows_blob(&images, "image/png; charset=binary"), "parameters are not part of the type");
        assert!(!allows_blob(&images, "video/mp4"));
        assert!(!allows_blob(&images, "imagex/png"));
        assert!(!allows_blob(&images, "image"));
        assert!(!allows_blob(&images, "image/*"), "a wildcard is not an uploaded file's type");
        assert!(!allows_blob(&images, ""));
        let any = perms(&["blob:*/*"]);
        assert!(allows_blob(&any, "application/octet-stream"));
        assert!(!allows_blob(&any, "nonsense"));
        let png = perms(&["blob:image/png"]);
        assert!(allows_blob(&png, "image/png"));
        assert!(!allows_blob(&png, "image/jpeg"));
        assert!(!allows_blob(&perms(&["repo:*"]), "image/png"));
    }

    #[test]
    fn rpc_calls_are_allowed_by_method_and_audience() {
        let timeline = perms(&["rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview"]);
        assert!(allows_rpc(&timeline, "app.bsky.feed.getTimeline", Some(TIMELINE_AUD)));
        assert!(!allows_rpc(&timeline, "app.bsky.feed.getTimeline", Some("did:web:evil.example#bsky_appview")));
        assert!(!allows_rpc(&timeline, "app.bsky.feed.getTimeline", None), "no proxy header: only aud=* matches");
        assert!(!allows_rpc(&timeline, "app.bsky.feed.getAuthorFeed", Some(TIMELINE_AUD)));
        let any_aud = perms(&["rpc:app.bsky.feed.getTimeline?aud=*"]);
        assert!(allows_rpc(&any_aud, "app.bsky.feed.getTimeline", None));
        assert!(allows_rpc(&any_aud, "app.bsky.feed.getTimeline", Some("did:web:other.example#svc")));
        assert!(!allows_rpc(&any_aud, "app.bsky.feed.getLikes", None));
        let any_method = perms(&["rpc:*?aud=did:web:api.bsky.app%23bsky_appview"]);
        assert!(allows_rpc(&any_method, "app.bsky.feed.getLikes", Some(TIMELINE_AUD)));
        assert!(!allows_rpc(&any_method, "app.bsky.feed.getLikes", Some("did:web:api.bsky.app#other")));
        assert!(!allows_rpc(&any_method, "not-an-nsid", Some(TIMELINE_AUD)));
        assert!(!allows_rpc(&perms(&["repo:*", "blob:*/*"]), "app.bsky.feed.getTimeline", None));
    }

    #[test]
    fn refused_calls_name_the_missing_permission() {
        assert_eq!(required_for_repo_write("com.example.other", RepoAction::Create), "repo:com.example.other?action=create");
        assert_eq!(required_for_repo_write("com.example.note", RepoAction::Delete), "repo:com.example.note?action=delete");
        assert_eq!(required_for_blob("image/png"), "blob:image/png");
        assert_eq!(required_for_blob("Image/PNG; charset=x"), "blob:image/png");
        assert_eq!(
            required_for_rpc("app.bsky.feed.getTimeline", Some(TIMELINE_AUD)),
            "rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview"
        );
        assert_eq!(required_for_rpc("app.bsky.feed.getTimeline", None), "rpc:app.bsky.feed.getTimeline?aud=*");
        // Whatever a caller sends, the name cannot grow extra parameters.
        assert_eq!(required_for_repo_write("a&action=delete", RepoAction::Create), "repo:a%26action%3Ddelete?action=create");
        for needed in [
            required_for_repo_write("com.example.other", RepoAction::Update),
            required_for_blob("video/mp4"),
            required_for_rpc("app.bsky.feed.getTimeline", Some(TIMELINE_AUD)),
        ] {
            let parsed = p(&needed);
            assert_eq!(parsed.to_string(), needed, "a named permission is canonical and can be granted as such");
        }
    }

    #[test]
    fn the_named_permission_is_what_allows_the_call() {
        let needed = p(&required_for_repo_write("com.example.other", RepoAction::Update));
        assert!(allows_repo_write(&[needed], "com.example.other", RepoAction::Update));
        let needed = p(&required_for_blob("video/mp4"));
        assert!(allows_blob(&[needed], "video/mp4"));
        let needed = p(&required_for_rpc("app.bsky.feed.getTimeline", Some(TIMELINE_AUD)));
        assert!(allows_rpc(&[needed], "app.bsky.feed.getTimeline", Some(TIMELINE_AUD)));
    }

    #[test]
    fn covers_relation() {
        let yes = |granted: &[&str], requested: &str| assert!(covers(&perms(granted), &p(requested)), "{granted:?} covers {requested}");
        let no =
            |granted: &[&str], requested: &str| assert!(!covers(&perms(granted), &p(requested)), "{granted:?} does not cover {requested}");

        yes(&["repo:*"], "repo:com.example.post?action=create");
        yes(&["repo:*"], "repo:*?action=delete");
        yes(&["repo:*"], "repo:*");
        yes(&["repo:com.example.post"], "repo:com.example.post?action=update");
        no(&["repo:com.example.post?action=create"], "repo:com.example.post");
        no(&["repo:com.example.post"], "repo:*");
        no(&["repo:com.example.post"], "repo:*?action=create");
        no(&["repo:*?action=create"], "repo:com.example.post?action=update");
        yes(&["repo:com.example.x?action=create", "repo:com.example.x?action=update&action=delete"], "repo:com.example.x");
        yes(&["repo?collection=com.example.a&collection=com.example.b"], "repo:com.example.a");
        yes(&["repo:com.example.a", "repo:com.example.b"], "repo?collection=com.example.a&collection=com.example.b");
        no(&["repo?collection=com.example.a&collection=com.example.b"], "repo?collection=com.example.a&collection=com.example.c");
        no(&["repo:*"], "blob:*/*");
        no(&[], "repo:com.example.post");

        yes(&["blob:*/*"], "blob:image/*");
        yes(&["blob:*/*"], "blob:*/*");
        yes(&["blob:image/*"], "blob:image/png");
        yes(&["blob:image/*"], "blob:image/*");
        no(&["blob:image/*"], "blob:*/*");
        no(&["blob:image/*"], "blob:video/*");
        no(&["blob:image/png"], "blob:image/*");
        yes(&["blob:image/*", "blob:video/mp4"], "blob?accept=image/png&accept=video/mp4");
        no(&["blob:image/*"], "blob?accept=image/png&accept=video/mp4");

        yes(&["rpc:*?aud=did:web:x.test%23svc"], "rpc:com.example.get?aud=did:web:x.test%23svc");
        no(&["rpc:*?aud=did:web:x.test%23svc"], "rpc:com.example.get?aud=*");
        no(&["rpc:*?aud=did:web:x.test%23svc"], "rpc:com.example.get?aud=did:web:y.test%23svc");
        yes(&["rpc:com.example.get?aud=*"], "rpc:com.example.get?aud=did:web:x.test%23svc");
        yes(&["rpc:com.example.get?aud=*"], "rpc:com.example.get?aud=*");
        no(&["rpc:com.example.get?aud=*"], "rpc:*?aud=did:web:x.test%23svc");
        yes(&["rpc:com.example.a?aud=*", "rpc:com.example.b?aud=*"], "rpc?lxm=com.example.a&lxm=com.example.b&aud=*");
        no(&["rpc:com.example.a?aud=*"], "rpc?lxm=com.example.a&lxm=com.example.b&aud=*");

        yes(&["include:com.example.authFull"], "include:com.example.authFull");
        no(&["include:com.example.authFull"], "include:com.example.authFull?aud=did:web:x.test%23svc");
        no(&["include:com.example.authFull?aud=did:web:x.test%23svc"], "include:com.example.authFull");
        no(&["repo:*", "blob:*/*", "rpc:*?aud=did:web:x.test%23svc", "include:com.example.other"], "include:com.example.authFull");
        no(&["include:com.example.authFull"], "repo:com.example.post");

        yes(&["account:email?action=manage"], "account:email");
        yes(&["account:email?action=manage"], "account:email?action=manage");
        no(&["account:email"], "account:email?action=manage");
        no(&["account:email?action=manage"], "account:status");
        yes(&["identity:*"], "identity:handle");
        yes(&["identity:handle"], "identity:handle");
        no(&["identity:handle"], "identity:*");
    }

    #[test]
    fn uncovered_lists_what_a_grant_lacks() {
        let granted = perms(&["repo:com.example.note?action=create", "blob:image/*"]);
        let requested =
            perms(&["repo:com.example.note?action=create", "blob:image/png", "repo:com.example.other", "include:com.example.authFull"]);
        let missing: Vec<String> = uncovered(&granted, &requested).iter().map(|p| p.to_string()).collect();
        assert_eq!(missing, ["repo:com.example.other", "include:com.example.authFull"]);
        assert!(uncovered(&requested, &requested).is_empty());
    }

    #[test]
    fn descriptions_in_plain_words() {
        for (scope, words) in [
            ("repo:com.example.post?action=create", "create records of type com.example.post in your repository"),
            ("repo:*", "create, update and delete records of any type in your repository"),
            ("repo:com.example.post?action=create&action=delete", "create and delete records of type com.example.post in your repository"),
            (
                "repo?collection=com.example.a&collection=com.example.b",
                "create, update and delete records of types com.example.a and com.example.b in your repository",
            ),
            ("blob:image/*", "upload files of type image/*"),
            ("blob:*/*", "upload files of any type"),
            ("blob?accept=image/*&accept=video/mp4", "upload files of type image/* or video/mp4"),
            (
                "rpc:app.bsky.feed.getTimeline?aud=did:web:api.bsky.app%23bsky_appview",
                "call app.bsky.feed.getTimeline at did:web:api.bsky.app#bsky_appview",
            ),
            ("rpc:app.bsky.feed.getTimeline?aud=*", "call app.bsky.feed.getTimeline at any service"),
            ("rpc:*?aud=did:web:x.test%23svc", "call any method at did:web:x.test#svc"),
            (
                "rpc?lxm=com.example.a&lxm=com.example.b&lxm=com.example.c&aud=*",
                "call com.example.a, com.example.b and com.example.c at any service",
            ),
            ("include:com.example.authFull", "use the permission set com.example.authFull"),
            (
                "include:com.example.authFull?aud=did:web:x.test%23svc",
                "use the permission set com.example.authFull with did:web:x.test#svc",
            ),
            ("account:email", "see your account's email address"),
            ("account:email?action=manage", "see and change your account's email address"),
            ("account:status", "see your account's hosting status"),
            ("account:status?action=manage", "see and change your account's hosting status"),
            ("identity:handle", "change your handle"),
            ("identity:*", "change your handle and DID document"),
        ] {
            assert_eq!(describe(&p(scope)), words, "{scope}");
        }
    }
}

/// Property tests: any input gives a permission or the module's own error, never a panic, and
/// every permission's canonical form parses back to itself.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn check(input: &str) -> Result<(), TestCaseError> {
        if let Ok(parsed) = Permission::parse(input) {
            let canonical = parsed.to_string();
            prop_assert!(canonical.len() <= MAX_PERMISSION_LEN, "{canonical:?}");
            let again = Permission::parse(&canonical);
            prop_assert_eq!(again.as_ref().ok(), Some(&parsed), "{:?} -> {:?}", input, canonical);
            prop_assert!(covers(std::slice::from_ref(&parsed), &parsed), "a permission covers itself: {canonical}");
            prop_assert!(!describe(&parsed).is_empty());
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_string_parses_or_is_refused(input in any::<String>()) {
            check(&input)?;
        }

        #[test]
        fn scope_like_strings_parse_or_are_refused(
            input in "(repo|rpc|blob|include|account|identity)[:?]([a-zA-Z0-9.*/#%:=&?+-]|%2[3AaFfBb]|action=|aud=|lxm=|accept=|collection=){0,24}"
        ) {
            check(&input)?;
        }

        #[test]
        fn generated_repo_permissions_round_trip(
            collections in prop::collection::vec("[a-z]{1,5}\\.[a-z]{1,5}\\.[a-zA-Z]{1,6}", 1..4),
            actions in prop::collection::vec(prop::sample::select(vec!["create", "update", "delete"]), 0..4),
        ) {
            let mut query: Vec<String> = collections.iter().map(|c| format!("collection={c}")).collect();
            query.extend(actions.iter().map(|a| format!("action={a}")));
            let input = format!("repo?{}", query.join("&"));
            let parsed = Permission::parse(&input).unwrap();
            check(&input)?;
            for c in &collections {
                for a in [RepoAction::Create, RepoAction::Update, RepoAction::Delete] {
                    let expected = actions.is_empty() || actions.contains(&a.as_str());
                    prop_assert_eq!(allows_repo_write(std::slice::from_ref(&parsed), c, a), expected);
                }
            }
        }
    }
}
