//! Which clients took part in a session, and the record of back-channel logout deliveries.
use std::collections::BTreeSet;

use sea_orm::{sea_query::Expr, ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::{
    entities::{access_token, logout_delivery, refresh_token},
    Store, StoreResult,
};

pub use logout_delivery::Model as LogoutDelivery;

impl Store {
    /// Every client that received tokens under the session.
    pub async fn session_client_ids(&self, sid: &str) -> StoreResult<Vec<String>> {
        let mut ids: BTreeSet<String> = refresh_token::Entity::find()
            .select_only()
            .column(refresh_token::Column::ClientId)
            .filter(refresh_token::Column::Sid.eq(sid))
            .distinct()
            .into_tuple::<String>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        ids.extend(
            access_token::Entity::find()
                .select_only()
                .column(access_token::Column::ClientId)
                .filter(access_token::Column::Sid.eq(sid))
                .distinct()
                .into_tuple::<String>()
                .all(&self.db)
                .await?,
        );
        Ok(ids.into_iter().collect())
    }

    pub async fn insert_logout_delivery(&self, delivery: &LogoutDelivery) -> StoreResult<()> {
        logout_delivery::ActiveModel::from(delivery.clone()).insert(&self.writer).await?;
        Ok(())
    }

    pub async fn update_logout_delivery(
        &self,
        id: &str,
        status: &str,
        attempts: i32,
        last_error: Option<String>,
        now: i64,
    ) -> StoreResult<()> {
        logout_delivery::Entity::update_many()
            .col_expr(logout_delivery::Column::Status, Expr::value(status))
            .col_expr(logout_delivery::Column::Attempts, Expr::value(attempts))
            .col_expr(logout_delivery::Column::LastError, Expr::value(last_error))
            .col_expr(logout_delivery::Column::UpdatedAt, Expr::value(now))
            .filter(logout_delivery::Column::Id.eq(id))
            .exec(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn logout_deliveries(&self, sid: &str) -> StoreResult<Vec<LogoutDelivery>> {
        Ok(logout_delivery::Entity::find()
            .filter(logout_delivery::Column::Sid.eq(sid))
            .order_by_asc(logout_delivery::Column::CreatedAt)
            .all(&self.db)
            .await?)
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
