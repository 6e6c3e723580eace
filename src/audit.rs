//! The audit log: who did what to which target, when, and from which address. Recording never
//! fails the action it describes (a failure is logged instead). Secrets never go in here. Its own
//! small module, below everything that records (admin, sso, the CLI): it depends on the store only.
use crate::{
    clock::now,
    store::{admin::NewAuditEntry, Store},
};

/// The audit actor of command-line changes.
pub const CLI_ACTOR: &str = "cli";

/// Who is acting and from where.
#[derive(Debug, Clone)]
pub struct Actor {
    /// An admin DID, `token:<name>`, or (for logins and logouts) the user's DID.
    pub name: String,
    pub remote_addr: Option<String>,
}

impl Actor {
    pub fn new(name: impl Into<String>, remote_addr: Option<String>) -> Self {
        Self { name: name.into(), remote_addr }
    }
}

pub async fn record(store: &Store, actor: &Actor, action: &str, target: Option<&str>, details: Option<String>) {
    let entry = NewAuditEntry {
        at: now(),
        actor: actor.name.clone(),
        action: action.to_owned(),
        target: target.map(str::to_owned),
        remote_addr: actor.remote_addr.clone(),
        details,
    };
    if let Err(error) = store.insert_audit(&entry).await {
        tracing::error!(%error, action, "writing the audit log failed");
    }
}

/// A person signed in (called by the ATProto callback after a verified login).
pub async fn login(store: &Store, did: &str, remote_addr: Option<String>) {
    record(store, &Actor::new(did, remote_addr), "login", None, None).await;
}

/// An SSO session ended (by the user, by an app's end-session request, or by an admin).
pub async fn logout(store: &Store, did: &str, sid: &str) {
    record(store, &Actor::new(did, None), "logout", Some(&format!("session:{sid}")), None).await;
}
