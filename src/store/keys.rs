//! Signing keys, sealed at rest.
use sea_orm::{sea_query::Expr, ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter};

use super::{entities::signing_key, Store, StoreResult};

pub use signing_key::Model as SigningKeyRow;

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

    /// Retires every active key and stores the new ones (one per algorithm), in one transaction.
    pub async fn rotate_signing_keys(&self, new_keys: &[(String, String, String)], now: i64) -> StoreResult<()> {
        use sea_orm::TransactionTrait;
        let txn = self.writer.begin().await?;
        signing_key::Entity::update_many()
            .col_expr(signing_key::Column::RetiredAt, Expr::value(now))
            .filter(signing_key::Column::RetiredAt.is_null())
            .exec(&txn)
            .await?;
        for (kid, alg, sealed_pem) in new_keys {
            signing_key::ActiveModel {
                kid: Set(kid.clone()),
                alg: Set(alg.clone()),
                private_key_sealed: Set(sealed_pem.clone()),
                created_at: Set(now),
                retired_at: Set(None),
            }
            .insert(&txn)
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }
}
