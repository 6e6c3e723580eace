//! A read cache for the two hottest lookups (userinfo, introspection): access-token records by
//! hash and user profiles by DID.
//!
//! It is only on with SQLite, where this process is the only writer of tokens: every revocation
//! goes through `Store` here and clears the cached records, so answers are exactly as fresh as
//! the database's. With Postgres (several nodes) a revocation on another node could not be seen,
//! so the cache is off and every lookup reads the database.
use dashmap::DashMap;

use super::{tokens::AccessTokenRecord, users::UserProfile};

/// Beyond this many entries a map is emptied (a crude but safe bound on memory).
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Default)]
pub struct ReadCache {
    enabled: bool,
    access_tokens: DashMap<String, AccessTokenRecord>,
    users: DashMap<String, UserProfile>,
}

impl ReadCache {
    pub fn new(enabled: bool) -> Self {
        Self { enabled, ..Default::default() }
    }

    pub fn access_token(&self, token_hash: &str) -> Option<AccessTokenRecord> {
        self.enabled.then(|| self.access_tokens.get(token_hash).map(|r| r.clone())).flatten()
    }

    pub fn put_access_token(&self, record: &AccessTokenRecord) {
        if self.enabled {
            if self.access_tokens.len() >= MAX_ENTRIES {
                self.access_tokens.clear();
            }
            self.access_tokens.insert(record.token_hash.clone(), record.clone());
        }
    }

    /// Any revocation: forget every cached token record (revocations are rare; lookups refill).
    pub fn forget_access_tokens(&self) {
        self.access_tokens.clear();
    }

    /// Drops records that have expired (the sweeper deletes their rows).
    pub fn forget_expired(&self, now: i64) {
        self.access_tokens.retain(|_, record| record.expires_at > now);
    }

    pub fn user(&self, did: &str) -> Option<UserProfile> {
        self.enabled.then(|| self.users.get(did).map(|u| u.clone())).flatten()
    }

    pub fn put_user(&self, user: &UserProfile) {
        if self.enabled {
            if self.users.len() >= MAX_ENTRIES {
                self.users.clear();
            }
            self.users.insert(user.did.clone(), user.clone());
        }
    }

    pub fn forget_user(&self, did: &str) {
        self.users.remove(did);
    }

    pub fn forget_users(&self) {
        self.users.clear();
    }
}
