//! Signing keys, sealed at rest.
use sea_orm::{sea_query::Expr, ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter, TransactionTrait};

use super::{entities::signing_key, Store, StoreResult};

pub use signing_key::Model as SigningKeyRow;

/// A stored key without its private half.
#[derive(Debug, Clone, sea_orm::FromQueryResult)]
pub struct SigningKeyInfo {
    pub kid: String,
    pub alg: String,
    pub created_at: i64,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
}

/// A key to store: its `kid`, algorithm and sealed private PEM.
pub struct NewSigningKey {
    pub kid: String,
    pub alg: String,
    pub private_key_sealed: String,
}

impl Store {
    /// Keys still published: unretired, or retired less than `overlap_secs` ago.
    pub async fn published_signing_keys(&self, now: i64, overlap_secs: i64) -> StoreResult<Vec<SigningKeyRow>> {
        Ok(signing_key::Entity::find()
            .filter(
                Condition::any().add(signing_key::Column::RetiredAt.is_null()).add(signing_key::Column::RetiredAt.gt(now - overlap_secs)),
            )
            .all(&self.db)
            .await?)
    }

    /// Stores the new keys (published at once, signing from `activates_at`) and retires every
    /// other key at that same instant (keys already retired earlier keep their time), in one
    /// transaction. The old keys sign until the new ones take over: never a gap, never two.
    pub async fn rotate_signing_keys(&self, new_keys: &[NewSigningKey], now: i64, activates_at: i64) -> StoreResult<()> {
        let txn = self.writer.begin().await?;
        signing_key::Entity::update_many()
            .col_expr(signing_key::Column::RetiredAt, Expr::value(activates_at))
            .filter(Condition::any().add(signing_key::Column::RetiredAt.is_null()).add(signing_key::Column::RetiredAt.gt(activates_at)))
            .exec(&txn)
            .await?;
        insert(&txn, new_keys, now, activates_at).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Every signing key ever made (metadata only; the sealed key is left out), newest
    /// activation first (a rotation within the same second as the key it replaces still lists
    /// the new keys first), RS256 before ES256.
    pub async fn signing_key_infos(&self) -> StoreResult<Vec<SigningKeyInfo>> {
        use sea_orm::{QueryOrder, QuerySelect};
        Ok(signing_key::Entity::find()
            .select_only()
            .column(signing_key::Column::Kid)
            .column(signing_key::Column::Alg)
            .column(signing_key::Column::CreatedAt)
            .column(signing_key::Column::ActivatesAt)
            .column(signing_key::Column::RetiredAt)
            .order_by_desc(signing_key::Column::ActivatesAt)
            .order_by_desc(Expr::col(signing_key::Column::RetiredAt).is_null())
            .order_by_desc(signing_key::Column::CreatedAt)
            .order_by_desc(signing_key::Column::Alg)
            .into_model::<SigningKeyInfo>()
            .all(&self.db)
            .await?)
    }

    /// First start of an algorithm (no key of it is active): stores keys active at once.
    pub async fn insert_first_signing_keys(&self, new_keys: &[NewSigningKey], now: i64) -> StoreResult<()> {
        let txn = self.writer.begin().await?;
        insert(&txn, new_keys, now, now).await?;
        txn.commit().await?;
        Ok(())
    }
}

async fn insert(txn: &sea_orm::DatabaseTransaction, new_keys: &[NewSigningKey], now: i64, activates_at: i64) -> StoreResult<()> {
    for key in new_keys {
        signing_key::ActiveModel {
            kid: Set(key.kid.clone()),
            alg: Set(key.alg.clone()),
            private_key_sealed: Set(key.private_key_sealed.clone()),
            created_at: Set(now),
            activates_at: Set(activates_at),
            retired_at: Set(None),
        }
        .insert(txn)
        .await?;
    }
    Ok(())
}
