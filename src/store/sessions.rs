//! SSO browser sessions.
use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    TransactionTrait,
};

use super::{entities::sso_session, invalidation::Change, Store, StoreResult};

pub use sso_session::Model as SsoSession;

impl Store {
    pub async fn insert_session(&self, session: &SsoSession) -> StoreResult<()> {
        sso_session::ActiveModel {
            sid: Set(session.sid.clone()),
            secret_hash: Set(session.secret_hash.clone()),
            did: Set(session.did.clone()),
            auth_time: Set(session.auth_time),
            created_at: Set(session.created_at),
            expires_at: Set(session.expires_at),
            ended_at: Set(session.ended_at),
        }
        .insert(&self.writer)
        .await?;
        Ok(())
    }

    /// The session if it exists, has not ended and has not expired.
    pub async fn live_session(&self, sid: &str, now: i64) -> StoreResult<Option<SsoSession>> {
        let session = match self.cache.session(sid) {
            Some(session) => Some(session),
            None => {
                let seen = self.cache.generation();
                let session = sso_session::Entity::find_by_id(sid.to_owned()).one(&self.db).await?;
                if let Some(session) = &session {
                    self.cache.put_session(session, seen);
                }
                session
            }
        };
        Ok(session.filter(|s| s.ended_at.is_none() && s.expires_at > now))
    }

    /// Records a fresh authentication in an existing session (prompt=login, max_age).
    pub async fn touch_session_auth_time(&self, sid: &str, now: i64) -> StoreResult<()> {
        let txn = self.writer.begin().await?;
        sso_session::Entity::update_many()
            .col_expr(sso_session::Column::AuthTime, Expr::value(now))
            .filter(sso_session::Column::Sid.eq(sid))
            .exec(&txn)
            .await?;
        self.commit_and_forget(txn, &[Change::Session(sid.to_owned())]).await
    }

    /// Marks a session ended; returns false when it was already ended or unknown.
    pub async fn end_session(&self, sid: &str, now: i64) -> StoreResult<bool> {
        let txn = self.writer.begin().await?;
        let result = sso_session::Entity::update_many()
            .col_expr(sso_session::Column::EndedAt, Expr::value(now))
            .filter(sso_session::Column::Sid.eq(sid))
            .filter(sso_session::Column::EndedAt.is_null())
            .exec(&txn)
            .await?;
        self.commit_and_forget(txn, &[Change::Session(sid.to_owned())]).await?;
        Ok(result.rows_affected == 1)
    }
}

pub(super) async fn sweep(db: &impl ConnectionTrait, now: i64) -> StoreResult<u64> {
    let result = sso_session::Entity::delete_many()
        .filter(Condition::any().add(sso_session::Column::ExpiresAt.lte(now)).add(sso_session::Column::EndedAt.lte(now - 86400)))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}
