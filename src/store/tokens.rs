//! Refresh tokens (opaque, stored hashed, rotated) and access-token records (for revocation).
use sea_orm::{sea_query::Expr, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait};

use super::{
    entities::{access_token, authorization_code, refresh_token},
    invalidation::Change,
    Store, StoreResult,
};

pub use access_token::Model as AccessTokenRecord;
pub use refresh_token::Model as RefreshTokenRecord;

/// What a token response spends: the authorization code or the refresh token it answers.
#[derive(Clone, Debug)]
pub enum Spend {
    Code {
        code_hash: String,
    },
    RefreshToken {
        token_hash: String,
    },
    /// A rotated token presented again within the retry window: its successor, still unused, is
    /// spent instead (the response that carried it was lost), and the presented token now names
    /// the new successor, so another retry finds it.
    RefreshRetry {
        presented_hash: String,
        successor_hash: String,
    },
}

impl Store {
    /// Spends the code or refresh token (a compare-and-set: of two concurrent presentations
    /// exactly one wins) and, only if that won, stores the new token records, all in one write.
    /// Returns false when the code or token had already been spent or revoked: nothing stored.
    pub async fn spend_and_store(
        &self,
        spend: Spend,
        now: i64,
        refresh: &RefreshTokenRecord,
        access: &AccessTokenRecord,
    ) -> StoreResult<bool> {
        let seen = self.cache.generation();
        let (refresh_row, access_row, spent) = (refresh.clone(), access.clone(), spend.clone());
        let refresh_hash = refresh.token_hash.clone();
        let stored = self
            .write_queue
            .write(move |txn| {
                let (spend, refresh_hash) = (spend.clone(), refresh_hash.clone());
                let refresh = refresh_token::ActiveModel::from(refresh_row.clone());
                let access = access_token::ActiveModel::from(access_row.clone());
                Box::pin(async move {
                    let spent = spend_in(txn, &spend, now, Some(&refresh_hash)).await?;
                    if spent != 1 {
                        return Ok(false);
                    }
                    refresh_token::Entity::insert(refresh).exec_without_returning(txn).await?;
                    access_token::Entity::insert(access).exec_without_returning(txn).await?;
                    // The access-token record is not cached here: most access tokens are never
                    // looked up by us (resource servers verify them offline); the first userinfo
                    // or introspection fills it.
                    Ok(true)
                })
            })
            .await?;
        if stored {
            self.cache.forget_spent(&spent);
            self.cache.put_refresh_token(refresh, seen);
        }
        Ok(stored)
    }

    /// A refresh token's record; an unspent one we just issued comes from the cache (see
    /// `cache`: the spend's compare-and-set has the last word).
    pub async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        if let Some(record) = self.cache.refresh_token(token_hash) {
            return Ok(Some(record));
        }
        self.refresh_token_in_db(token_hash).await
    }

    /// The refresh token's record as the database has it now (after a lost compare-and-set).
    pub async fn refresh_token_in_db(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        Ok(refresh_token::Entity::find_by_id(token_hash.to_owned()).one(&self.db).await?)
    }

    /// The record of an access token we issued, found by the hash of the whole token.
    pub async fn access_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<AccessTokenRecord>> {
        if let Some(record) = self.cache.access_token(token_hash) {
            return Ok(Some(record));
        }
        let seen = self.cache.generation();
        let record = access_token::Entity::find().filter(access_token::Column::TokenHash.eq(token_hash)).one(&self.db).await?;
        if let Some(record) = &record {
            self.cache.put_access_token(record, seen);
        }
        Ok(record)
    }

    /// Revokes every refresh and access token of a grant family (code replay, refresh reuse,
    /// revocation of a refresh token).
    pub async fn revoke_family(&self, family_id: &str, now: i64) -> StoreResult<()> {
        self.revoke_where(refresh_token::Column::FamilyId.eq(family_id), access_token::Column::FamilyId.eq(family_id), now).await
    }

    /// Revokes every token issued under an SSO session, for all clients.
    pub async fn revoke_session_tokens(&self, sid: &str, now: i64) -> StoreResult<()> {
        self.revoke_where(refresh_token::Column::Sid.eq(sid), access_token::Column::Sid.eq(sid), now).await
    }

    pub async fn revoke_access_token(&self, jti: &str, now: i64) -> StoreResult<()> {
        let txn = self.writer.begin().await?;
        access_token::Entity::update_many()
            .col_expr(access_token::Column::RevokedAt, Expr::value(now))
            .filter(access_token::Column::Jti.eq(jti))
            .filter(access_token::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        self.commit_and_forget(txn, &[Change::Tokens]).await
    }

    async fn revoke_where(
        &self,
        refresh_filter: sea_orm::sea_query::SimpleExpr,
        access_filter: sea_orm::sea_query::SimpleExpr,
        now: i64,
    ) -> StoreResult<()> {
        let txn = self.writer.begin().await?;
        revoke_in(&txn, refresh_filter, access_filter, now).await?;
        self.commit_and_forget(txn, &[Change::Tokens]).await
    }
}

/// Revokes the refresh and access tokens the filters select, inside the caller's transaction
/// (which announces `Change::Tokens` when it commits).
pub(super) async fn revoke_in(
    txn: &impl ConnectionTrait,
    refresh_filter: sea_orm::sea_query::SimpleExpr,
    access_filter: sea_orm::sea_query::SimpleExpr,
    now: i64,
) -> Result<(), sea_orm::DbErr> {
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
        .filter(refresh_filter)
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(txn)
        .await?;
    access_token::Entity::update_many()
        .col_expr(access_token::Column::RevokedAt, Expr::value(now))
        .filter(access_filter)
        .filter(access_token::Column::RevokedAt.is_null())
        .exec(txn)
        .await?;
    Ok(())
}

pub(super) async fn sweep(db: &impl ConnectionTrait, now: i64) -> StoreResult<u64> {
    let refresh = refresh_token::Entity::delete_many().filter(refresh_token::Column::ExpiresAt.lte(now)).exec(db).await?;
    let access =
        access_token::Entity::delete_many().filter(Condition::all().add(access_token::Column::ExpiresAt.lte(now))).exec(db).await?;
    Ok(refresh.rows_affected + access.rows_affected)
}

/// Marks the code used or the refresh token rotated (naming `successor`, the token that replaces
/// it) if it still can be; returns the rows changed (1 = this request won the compare-and-set).
pub(super) async fn spend_in(txn: &impl ConnectionTrait, spend: &Spend, now: i64, successor: Option<&str>) -> Result<u64, sea_orm::DbErr> {
    let rotate = |token_hash: &str| {
        refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::RotatedAt, Expr::value(now))
            .col_expr(refresh_token::Column::ReplacedBy, Expr::value(successor.map(str::to_owned)))
            .filter(refresh_token::Column::TokenHash.eq(token_hash))
            .filter(refresh_token::Column::RotatedAt.is_null())
            .filter(refresh_token::Column::RevokedAt.is_null())
    };
    let result = match spend {
        Spend::Code { code_hash } => {
            authorization_code::Entity::update_many()
                .col_expr(authorization_code::Column::UsedAt, Expr::value(now))
                .filter(authorization_code::Column::CodeHash.eq(code_hash.as_str()))
                .filter(authorization_code::Column::UsedAt.is_null())
                .exec(txn)
                .await?
        }
        Spend::RefreshToken { token_hash } => rotate(token_hash).exec(txn).await?,
        Spend::RefreshRetry { presented_hash, successor_hash } => {
            let spent = rotate(successor_hash).exec(txn).await?;
            if spent.rows_affected == 1 {
                refresh_token::Entity::update_many()
                    .col_expr(refresh_token::Column::ReplacedBy, Expr::value(successor.map(str::to_owned)))
                    .filter(refresh_token::Column::TokenHash.eq(presented_hash.as_str()))
                    .filter(refresh_token::Column::ReplacedBy.eq(successor_hash.as_str()))
                    .exec(txn)
                    .await?;
            }
            spent
        }
    };
    Ok(result.rows_affected)
}

#[cfg(feature = "bench-seam")]
impl Store {
    /// Bulk rows for the growth benchmark (users and refresh tokens), in one transaction.
    pub async fn insert_seed_batch(
        &self,
        users: Vec<crate::store::users::UserProfile>,
        refresh: Vec<RefreshTokenRecord>,
        now: i64,
    ) -> StoreResult<()> {
        use super::entities::user;
        use sea_orm::ActiveValue::Set;
        let txn = self.writer.begin().await?;
        if !users.is_empty() {
            user::Entity::insert_many(users.into_iter().map(|u| user::ActiveModel {
                did: Set(u.did),
                handle: Set(u.handle),
                display_name: Set(u.display_name),
                avatar: Set(u.avatar),
                email: Set(u.email),
                email_verified: Set(u.email_verified),
                created_at: Set(now),
                updated_at: Set(now),
            }))
            .exec(&txn)
            .await?;
        }
        if !refresh.is_empty() {
            refresh_token::Entity::insert_many(refresh.into_iter().map(refresh_token::ActiveModel::from)).exec(&txn).await?;
        }
        txn.commit().await?;
        Ok(())
    }
}
