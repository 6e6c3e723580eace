//! Users, keyed by DID (handles change; the DID does not).
use sea_orm::{sea_query::OnConflict, ActiveValue::Set, EntityTrait, TransactionTrait};

use super::{entities::user, invalidation::Change, Store, StoreResult};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserProfile {
    pub did: String,
    pub handle: Option<String>,
    pub display_name: Option<String>,
    pub avatar: Option<String>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
}

impl From<user::Model> for UserProfile {
    fn from(row: user::Model) -> Self {
        Self {
            did: row.did,
            handle: row.handle,
            display_name: row.display_name,
            avatar: row.avatar,
            email: row.email,
            email_verified: row.email_verified,
        }
    }
}

impl Store {
    /// Inserts or refreshes a user's profile (handle changes follow the DID).
    pub async fn upsert_user(&self, profile: &UserProfile, now: i64) -> StoreResult<()> {
        let row = user::ActiveModel {
            did: Set(profile.did.clone()),
            handle: Set(profile.handle.clone()),
            display_name: Set(profile.display_name.clone()),
            avatar: Set(profile.avatar.clone()),
            email: Set(profile.email.clone()),
            email_verified: Set(profile.email_verified),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let txn = self.writer.begin().await?;
        user::Entity::insert(row)
            .on_conflict(
                OnConflict::column(user::Column::Did)
                    .update_columns([
                        user::Column::Handle,
                        user::Column::DisplayName,
                        user::Column::Avatar,
                        user::Column::Email,
                        user::Column::EmailVerified,
                        user::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec(&txn)
            .await?;
        self.commit_and_forget(txn, &[Change::User(profile.did.clone())]).await
    }

    pub async fn user(&self, did: &str) -> StoreResult<Option<UserProfile>> {
        if let Some(user) = self.cache.user(did) {
            return Ok(Some(user));
        }
        let seen = self.cache.generation();
        let user = user::Entity::find_by_id(did.to_owned()).one(&self.db).await?.map(UserProfile::from);
        if let Some(user) = &user {
            self.cache.put_user(user, seen);
        }
        Ok(user)
    }
}
