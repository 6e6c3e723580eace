//! Tenant clients (relying parties).
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};

use crate::crypto::signing::Alg;

use super::{conflict_or, entities::client, from_json_list, invalidation::Change, to_json_list, Store, StoreError, StoreResult};

/// A client as the provider uses it (lists decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub secret_hash: Option<String>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    pub frontchannel_logout_uri: Option<String>,
    pub first_party: bool,
    pub allowed_scopes: Vec<String>,
    pub enabled: bool,
    pub created_at: i64,
    /// Created by RFC 7591 dynamic registration, not by an admin: its logout URIs were chosen
    /// by whoever held a registration token, so deliveries never go to loopback.
    pub dynamically_registered: bool,
    /// PKCE (S256) is required unless an admin exempted this (confidential, legacy) client.
    pub allow_no_pkce: bool,
    /// The algorithm of this client's access tokens; `None` follows `ATSSO_ACCESS_TOKEN_ALG`.
    pub access_token_alg: Option<Alg>,
    /// The upstream ATProto permissions this client may ask for, canonical and without the
    /// `atproto:` prefix (checked by `oidc::clients`); empty allows none.
    pub atproto_scopes: Vec<String>,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }

    /// Every client must use PKCE (S256), except a confidential one an admin exempted.
    pub fn pkce_required(&self) -> bool {
        self.is_public() || !self.allow_no_pkce
    }

    /// The algorithm its access tokens are signed with, given the global setting.
    pub fn access_token_alg_or(&self, global: Alg) -> Alg {
        self.access_token_alg.unwrap_or(global)
    }
}

impl TryFrom<client::Model> for Client {
    type Error = StoreError;
    fn try_from(row: client::Model) -> StoreResult<Self> {
        Ok(Self {
            redirect_uris: from_json_list(&row.redirect_uris)?,
            post_logout_redirect_uris: from_json_list(&row.post_logout_redirect_uris)?,
            allowed_scopes: row.allowed_scopes.split(' ').filter(|s| !s.is_empty()).map(String::from).collect(),
            atproto_scopes: split_scopes(&row.atproto_scopes),
            client_id: row.client_id,
            name: row.name,
            secret_hash: row.secret_hash,
            backchannel_logout_uri: row.backchannel_logout_uri,
            frontchannel_logout_uri: row.frontchannel_logout_uri,
            first_party: row.first_party,
            enabled: row.enabled,
            created_at: row.created_at,
            dynamically_registered: row.dynamically_registered,
            allow_no_pkce: row.allow_no_pkce,
            access_token_alg: match row.access_token_alg.as_deref() {
                None => None,
                Some(text) => Some(Alg::parse(text).ok_or_else(|| StoreError::Corrupt(format!("client access_token_alg `{text}`")))?),
            },
        })
    }
}

/// A space-separated list as stored (canonical permissions never contain a space).
fn split_scopes(stored: &str) -> Vec<String> {
    stored.split(' ').filter(|s| !s.is_empty()).map(String::from).collect()
}

impl Store {
    pub async fn insert_client(&self, c: &Client, now: i64) -> StoreResult<()> {
        client::ActiveModel {
            client_id: Set(c.client_id.clone()),
            name: Set(c.name.clone()),
            secret_hash: Set(c.secret_hash.clone()),
            redirect_uris: Set(to_json_list(&c.redirect_uris)),
            post_logout_redirect_uris: Set(to_json_list(&c.post_logout_redirect_uris)),
            backchannel_logout_uri: Set(c.backchannel_logout_uri.clone()),
            frontchannel_logout_uri: Set(c.frontchannel_logout_uri.clone()),
            first_party: Set(c.first_party),
            allowed_scopes: Set(c.allowed_scopes.join(" ")),
            enabled: Set(c.enabled),
            created_at: Set(now),
            updated_at: Set(now),
            dynamically_registered: Set(c.dynamically_registered),
            allow_no_pkce: Set(c.allow_no_pkce),
            access_token_alg: Set(c.access_token_alg.map(|alg| alg.as_str().to_owned())),
            atproto_scopes: Set(c.atproto_scopes.join(" ")),
        }
        .insert(&self.writer)
        .await
        .map_err(conflict_or)?;
        Ok(())
    }

    /// The client (at most `cache::CLIENT_TTL` old when changed outside this process).
    pub async fn client(&self, client_id: &str) -> StoreResult<Option<Client>> {
        if let Some(client) = self.cache.client(client_id) {
            return Ok(Some(client));
        }
        let seen = self.cache.generation();
        let client = client::Entity::find_by_id(client_id.to_owned()).one(&self.db).await?.map(Client::try_from).transpose()?;
        if let Some(client) = &client {
            self.cache.put_client(client, seen);
        }
        Ok(client)
    }

    /// The sorted, deduplicated union of the ATProto permissions enabled clients may ask for
    /// (canonical, without the `atproto:` prefix): the `scope` atsso's upstream client metadata
    /// declares. Read from the database each time, not cached: only PDSes fetching that
    /// document ask, and a cached union would need its own invalidation on every client change.
    pub async fn allowed_atproto_permissions_union(&self) -> StoreResult<Vec<String>> {
        let rows: Vec<String> = client::Entity::find()
            .select_only()
            .column(client::Column::AtprotoScopes)
            .filter(client::Column::Enabled.eq(true))
            .filter(client::Column::AtprotoScopes.ne(""))
            .into_tuple()
            .all(&self.db)
            .await?;
        let union: std::collections::BTreeSet<String> = rows.iter().flat_map(|row| split_scopes(row)).collect();
        Ok(union.into_iter().collect())
    }

    pub async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        client::Entity::find().order_by_asc(client::Column::CreatedAt).all(&self.db).await?.into_iter().map(Client::try_from).collect()
    }

    /// Returns false when no such client exists.
    pub async fn set_client_secret_hash(&self, client_id: &str, hash: &str, now: i64) -> StoreResult<bool> {
        let Some(row) = client::Entity::find_by_id(client_id.to_owned()).one(&self.db).await? else {
            return Ok(false);
        };
        let mut active: client::ActiveModel = row.into();
        active.secret_hash = Set(Some(hash.to_owned()));
        active.updated_at = Set(now);
        let txn = self.writer.begin().await?;
        active.update(&txn).await?;
        self.commit_and_forget(txn, &[Change::Client(client_id.to_owned())]).await?;
        Ok(true)
    }

    /// Enables or disables a client; disabling also revokes every refresh and access token it
    /// holds, in the same transaction (enabling again does not bring them back). Returns false
    /// when no such client exists.
    pub async fn set_client_enabled(&self, client_id: &str, enabled: bool, now: i64) -> StoreResult<bool> {
        let txn = self.writer.begin().await?;
        let Some(row) = client::Entity::find_by_id(client_id.to_owned()).one(&txn).await? else {
            return Ok(false);
        };
        let mut active: client::ActiveModel = row.into();
        active.enabled = Set(enabled);
        active.updated_at = Set(now);
        active.update(&txn).await?;
        let mut changes = vec![Change::Client(client_id.to_owned())];
        if !enabled {
            revoke_client_tokens(&txn, client_id, now).await?;
            changes.push(Change::Tokens);
        }
        self.commit_and_forget(txn, &changes).await?;
        Ok(true)
    }

    /// One page of clients (oldest first) and the total count.
    pub async fn list_clients_page(&self, limit: u64, offset: u64) -> StoreResult<(Vec<Client>, u64)> {
        let total = client::Entity::find().count(&self.db).await?;
        let rows = client::Entity::find()
            .order_by_asc(client::Column::CreatedAt)
            .order_by_asc(client::Column::ClientId)
            .limit(limit)
            .offset(offset)
            .all(&self.db)
            .await?;
        Ok((rows.into_iter().map(Client::try_from).collect::<StoreResult<_>>()?, total))
    }

    /// Saves a client's settings (not its secret or enabled flag). Returns false when it is gone.
    pub async fn update_client(&self, c: &Client, now: i64) -> StoreResult<bool> {
        let Some(row) = client::Entity::find_by_id(c.client_id.clone()).one(&self.db).await? else {
            return Ok(false);
        };
        let mut active: client::ActiveModel = row.into();
        active.name = Set(c.name.clone());
        active.redirect_uris = Set(to_json_list(&c.redirect_uris));
        active.post_logout_redirect_uris = Set(to_json_list(&c.post_logout_redirect_uris));
        active.backchannel_logout_uri = Set(c.backchannel_logout_uri.clone());
        active.frontchannel_logout_uri = Set(c.frontchannel_logout_uri.clone());
        active.first_party = Set(c.first_party);
        active.allowed_scopes = Set(c.allowed_scopes.join(" "));
        active.allow_no_pkce = Set(c.allow_no_pkce);
        active.access_token_alg = Set(c.access_token_alg.map(|alg| alg.as_str().to_owned()));
        active.atproto_scopes = Set(c.atproto_scopes.join(" "));
        active.updated_at = Set(now);
        let txn = self.writer.begin().await?;
        active.update(&txn).await.map_err(conflict_or)?;
        self.commit_and_forget(txn, &[Change::Client(c.client_id.clone())]).await?;
        Ok(true)
    }

    /// Deletes a client after revoking its tokens and forgetting its consents and pending
    /// requests, in one transaction. Returns false when no such client exists.
    pub async fn delete_client(&self, client_id: &str, now: i64) -> StoreResult<bool> {
        use super::entities::{authorization_request, consent};
        let txn = self.writer.begin().await?;
        revoke_client_tokens(&txn, client_id, now).await?;
        consent::Entity::delete_many().filter(consent::Column::ClientId.eq(client_id)).exec(&txn).await?;
        authorization_request::Entity::delete_many().filter(authorization_request::Column::ClientId.eq(client_id)).exec(&txn).await?;
        let deleted = client::Entity::delete_by_id(client_id.to_owned()).exec(&txn).await?;
        self.commit_and_forget(txn, &[Change::Tokens, Change::Client(client_id.to_owned())]).await?;
        Ok(deleted.rows_affected == 1)
    }
}

/// Revokes every grant of a client (its refresh and access tokens) and forgets its authorization
/// codes (a disabled or deleted client's tokens end at once). The caller clears the token caches
/// after the commit. (No index on `client_id`: a scan, for a rare administrative act, rather than
/// one more index write per grant.)
async fn revoke_client_tokens(txn: &impl ConnectionTrait, client_id: &str, now: i64) -> StoreResult<()> {
    use super::entities::{authorization_code, grant_family};
    super::tokens::revoke_in(txn, grant_family::Column::ClientId.eq(client_id), now).await?;
    authorization_code::Entity::delete_many().filter(authorization_code::Column::ClientId.eq(client_id)).exec(txn).await?;
    Ok(())
}
