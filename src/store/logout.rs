//! Which clients took part in a session, and a user's live sessions (the outbox of what a logout
//! still has to tell others is `outbox`).
use std::collections::BTreeSet;

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

use super::{
    entities::{grant_family, legacy_access_token, legacy_refresh_token},
    Store, StoreResult,
};

impl Store {
    /// Every client that received tokens under the session.
    pub async fn session_client_ids(&self, sid: &str) -> StoreResult<Vec<String>> {
        Ok(session_client_ids_in(&self.db, sid).await?)
    }

    /// Live sessions of a user (for "end all sessions of this DID").
    pub async fn live_session_ids_for_did(&self, did: &str, now: i64) -> StoreResult<Vec<String>> {
        use super::entities::sso_session;
        Ok(sso_session::Entity::find()
            .select_only()
            .column(sso_session::Column::Sid)
            .filter(sso_session::Column::Did.eq(did))
            .filter(sso_session::Column::EndedAt.is_null())
            .filter(sso_session::Column::ExpiresAt.gt(now))
            .into_tuple::<String>()
            .all(&self.db)
            .await?)
    }
}

/// Every client that received tokens under the session, sorted (on any connection: the logout
/// reads them inside its transaction).
pub(super) async fn session_client_ids_in(db: &impl ConnectionTrait, sid: &str) -> Result<Vec<String>, DbErr> {
    let mut ids: BTreeSet<String> = BTreeSet::new();
    ids.extend(
        grant_family::Entity::find()
            .select_only()
            .column(grant_family::Column::ClientId)
            .filter(grant_family::Column::Sid.eq(sid))
            .distinct()
            .into_tuple::<String>()
            .all(db)
            .await?,
    );
    // Grants from before families, until the sweeper has removed their last rows.
    ids.extend(
        legacy_refresh_token::Entity::find()
            .select_only()
            .column(legacy_refresh_token::Column::ClientId)
            .filter(legacy_refresh_token::Column::Sid.eq(sid))
            .distinct()
            .into_tuple::<String>()
            .all(db)
            .await?,
    );
    ids.extend(
        legacy_access_token::Entity::find()
            .select_only()
            .column(legacy_access_token::Column::ClientId)
            .filter(legacy_access_token::Column::Sid.eq(sid))
            .distinct()
            .into_tuple::<String>()
            .all(db)
            .await?,
    );
    Ok(ids.into_iter().collect())
}
