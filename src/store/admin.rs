//! Administration: admin API tokens, the audit log, and the read-only listings of the admin
//! pages (users, their sessions and consents, signing keys).
use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::{
    conflict_or,
    entities::{consent, sso_session, user},
    Store, StoreResult,
};

pub mod admin_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "admin_tokens")]
    pub struct Model {
        /// The public half of the token (`<id>.<secret>`).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        /// `admin` or `registration`.
        pub kind: String,
        /// Argon2id PHC string of the secret half.
        pub token_hash: String,
        pub created_at: i64,
        pub last_used_at: Option<i64>,
        pub revoked_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod audit_entry {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub at: i64,
        /// An admin DID, `token:<name>`, or the DID of a person signing in or out.
        pub actor: String,
        pub action: String,
        pub target: Option<String>,
        pub remote_addr: Option<String>,
        pub details: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use admin_token::Model as AdminTokenRow;
pub use audit_entry::Model as AuditEntry;
pub use consent::Model as ConsentRow;
pub use user::Model as UserRow;

/// An audit record before it is stored.
#[derive(Debug, Clone, Default)]
pub struct NewAuditEntry {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub remote_addr: Option<String>,
    pub details: Option<String>,
}

/// Filters for the audit listing.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
}

impl Store {
    pub async fn insert_admin_token(&self, row: &AdminTokenRow) -> StoreResult<()> {
        admin_token::ActiveModel::from(row.clone()).insert(&self.writer).await.map_err(conflict_or)?;
        Ok(())
    }

    pub async fn admin_token(&self, id: &str) -> StoreResult<Option<AdminTokenRow>> {
        Ok(admin_token::Entity::find_by_id(id.to_owned()).one(&self.db).await?)
    }

    pub async fn list_admin_tokens(&self) -> StoreResult<Vec<AdminTokenRow>> {
        Ok(admin_token::Entity::find().order_by_asc(admin_token::Column::CreatedAt).all(&self.db).await?)
    }

    /// Revokes the token with this name; false when there is no live token of that name.
    pub async fn revoke_admin_token(&self, name: &str, now: i64) -> StoreResult<bool> {
        let result = admin_token::Entity::update_many()
            .col_expr(admin_token::Column::RevokedAt, Expr::value(now))
            .filter(admin_token::Column::Name.eq(name))
            .filter(admin_token::Column::RevokedAt.is_null())
            .exec(&self.writer)
            .await?;
        Ok(result.rows_affected > 0)
    }

    pub async fn touch_admin_token(&self, id: &str, now: i64) -> StoreResult<()> {
        admin_token::Entity::update_many()
            .col_expr(admin_token::Column::LastUsedAt, Expr::value(now))
            .filter(admin_token::Column::Id.eq(id))
            .exec(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn insert_audit(&self, entry: &NewAuditEntry) -> StoreResult<()> {
        audit_entry::ActiveModel {
            at: Set(entry.at),
            actor: Set(entry.actor.clone()),
            action: Set(entry.action.clone()),
            target: Set(entry.target.clone()),
            remote_addr: Set(entry.remote_addr.clone()),
            details: Set(entry.details.clone()),
            ..Default::default()
        }
        .insert(&self.writer)
        .await?;
        Ok(())
    }

    /// Newest first.
    pub async fn list_audit(&self, filter: &AuditFilter, limit: u64, offset: u64) -> StoreResult<(Vec<AuditEntry>, u64)> {
        let mut condition = Condition::all();
        if let Some(actor) = &filter.actor {
            condition = condition.add(audit_entry::Column::Actor.eq(actor.as_str()));
        }
        if let Some(action) = &filter.action {
            condition = condition.add(audit_entry::Column::Action.eq(action.as_str()));
        }
        if let Some(target) = &filter.target {
            condition = condition.add(audit_entry::Column::Target.eq(target.as_str()));
        }
        let query = audit_entry::Entity::find().filter(condition);
        let total = query.clone().count(&self.db).await?;
        let rows = query.order_by_desc(audit_entry::Column::Id).limit(limit).offset(offset).all(&self.db).await?;
        Ok((rows, total))
    }

    /// Users whose handle or DID contains `search` (case-insensitive), most recently seen first.
    pub async fn list_users(&self, search: Option<&str>, limit: u64, offset: u64) -> StoreResult<(Vec<UserRow>, u64)> {
        let mut query = user::Entity::find();
        if let Some(text) = search.map(str::trim).filter(|t| !t.is_empty()) {
            let text = text.trim_start_matches('@').to_lowercase();
            query = query
                .filter(Condition::any().add(user::Column::Handle.contains(text.as_str())).add(user::Column::Did.contains(text.as_str())));
        }
        let total = query.clone().count(&self.db).await?;
        let rows =
            query.order_by_desc(user::Column::UpdatedAt).order_by_asc(user::Column::Did).limit(limit).offset(offset).all(&self.db).await?;
        Ok((rows, total))
    }

    pub async fn user_row(&self, did: &str) -> StoreResult<Option<UserRow>> {
        Ok(user::Entity::find_by_id(did.to_owned()).one(&self.db).await?)
    }

    /// A user's live SSO sessions, newest first.
    pub async fn live_sessions_for_did(&self, did: &str, now: i64) -> StoreResult<Vec<sso_session::Model>> {
        Ok(sso_session::Entity::find()
            .filter(sso_session::Column::Did.eq(did))
            .filter(sso_session::Column::EndedAt.is_null())
            .filter(sso_session::Column::ExpiresAt.gt(now))
            .order_by_desc(sso_session::Column::CreatedAt)
            .all(&self.db)
            .await?)
    }

    pub async fn consents_for_did(&self, did: &str) -> StoreResult<Vec<ConsentRow>> {
        Ok(consent::Entity::find().filter(consent::Column::Did.eq(did)).order_by_asc(consent::Column::ClientId).all(&self.db).await?)
    }
}
