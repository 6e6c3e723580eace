//! Pending authorization requests, remembered consents and authorization codes.
use sea_orm::{sea_query::OnConflict, ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::{
    entities::{authorization_code, authorization_request, consent},
    Store, StoreResult,
};

pub use authorization_code::Model as AuthorizationCode;

/// What happened when a code was presented.
pub enum CodeRedemption {
    /// First use: the code is now spent.
    Redeemed(AuthorizationCode),
    /// The code was already used: whatever it issued must be revoked.
    Replayed(AuthorizationCode),
    Unknown,
}

impl Store {
    pub async fn insert_authorization_request(
        &self,
        id: &str,
        client_id: &str,
        params_json: String,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        authorization_request::ActiveModel {
            id: Set(id.to_owned()),
            client_id: Set(client_id.to_owned()),
            params: Set(params_json),
            created_at: Set(now),
            expires_at: Set(expires_at),
        }
        .insert(&self.writer)
        .await?;
        Ok(())
    }

    /// The stored request's JSON and creation time, if it has not expired.
    pub async fn authorization_request(&self, id: &str, now: i64) -> StoreResult<Option<(String, i64)>> {
        Ok(authorization_request::Entity::find_by_id(id.to_owned())
            .one(&self.db)
            .await?
            .filter(|r| r.expires_at > now)
            .map(|r| (r.params, r.created_at)))
    }

    pub async fn delete_authorization_request(&self, id: &str) -> StoreResult<()> {
        authorization_request::Entity::delete_by_id(id.to_owned()).exec(&self.writer).await?;
        Ok(())
    }

    /// Scopes the user already granted to the client (empty when none).
    pub async fn consented_scopes(&self, did: &str, client_id: &str) -> StoreResult<Vec<String>> {
        Ok(consent::Entity::find_by_id((did.to_owned(), client_id.to_owned()))
            .one(&self.db)
            .await?
            .map(|c| c.scopes.split(' ').filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default())
    }

    pub async fn save_consent(&self, did: &str, client_id: &str, scopes: &[String], now: i64) -> StoreResult<()> {
        let row = consent::ActiveModel {
            did: Set(did.to_owned()),
            client_id: Set(client_id.to_owned()),
            scopes: Set(scopes.join(" ")),
            created_at: Set(now),
        };
        consent::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([consent::Column::Did, consent::Column::ClientId])
                    .update_columns([consent::Column::Scopes, consent::Column::CreatedAt])
                    .to_owned(),
            )
            .exec(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn insert_code(&self, code: &AuthorizationCode) -> StoreResult<()> {
        let seen = self.cache.generation();
        if self.write_queue.is_batched() {
            let stored = code.clone();
            self.write_queue
                .write(move |txn| {
                    let row = authorization_code::ActiveModel::from(stored.clone());
                    Box::pin(async move {
                        authorization_code::Entity::insert(row).exec_without_returning(txn).await?;
                        Ok(())
                    })
                })
                .await?;
        } else {
            // One statement: no transaction around it (one round trip instead of three).
            authorization_code::Entity::insert(authorization_code::ActiveModel::from(code.clone()))
                .exec_without_returning(&self.writer)
                .await?;
        }
        // The token request that follows finds it without a database read (see `cache`).
        self.cache.put_code(code, seen);
        Ok(())
    }

    pub async fn authorization_code(&self, code_hash: &str) -> StoreResult<Option<AuthorizationCode>> {
        if let Some(code) = self.cache.code(code_hash) {
            return Ok(Some(code));
        }
        Ok(authorization_code::Entity::find_by_id(code_hash.to_owned()).one(&self.db).await?)
    }

    /// Spends a code atomically: of two concurrent redemptions exactly one wins (the guarded
    /// UPDATE is the compare-and-set).
    pub async fn redeem_code(&self, code_hash: &str, now: i64) -> StoreResult<CodeRedemption> {
        let spend = super::tokens::Spend::Code { code_hash: code_hash.to_owned() };
        let (row_key, spend_in_txn) = (code_hash.to_owned(), spend.clone());
        let redemption = self
            .write_queue
            .write(move |txn| {
                let (row_key, spend) = (row_key.clone(), spend_in_txn.clone());
                Box::pin(async move {
                    let Some(row) = authorization_code::Entity::find_by_id(row_key).one(txn).await? else {
                        return Ok(CodeRedemption::Unknown);
                    };
                    if row.used_at.is_some() {
                        return Ok(CodeRedemption::Replayed(row));
                    }
                    let won = super::tokens::spend_code_in(txn, &spend, now).await? == 1;
                    Ok(if won { CodeRedemption::Redeemed(row) } else { CodeRedemption::Replayed(row) })
                })
            })
            .await?;
        self.cache.forget_code(code_hash);
        Ok(redemption)
    }
}

pub(super) async fn sweep(db: &impl ConnectionTrait, now: i64) -> StoreResult<u64> {
    let requests = authorization_request::Entity::delete_many().filter(authorization_request::Column::ExpiresAt.lte(now)).exec(db).await?;
    // Spent codes are kept until they expire so a replay is still recognised.
    let codes = authorization_code::Entity::delete_many().filter(authorization_code::Column::ExpiresAt.lte(now - 600)).exec(db).await?;
    Ok(requests.rows_affected + codes.rows_affected)
}
