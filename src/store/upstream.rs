//! Upstream (ATProto) rows: pending logins, sessions, our client key. Values arrive sealed.
use sea_orm::{
    sea_query::Expr, ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
};

use super::{
    entities::{atproto_client_key, upstream_login, upstream_session},
    Store, StoreResult,
};

pub use upstream_login::Model as UpstreamLoginRow;
pub use upstream_session::Model as UpstreamSessionRow;

impl Store {
    pub async fn insert_upstream_login(&self, row: &UpstreamLoginRow) -> StoreResult<()> {
        upstream_login::ActiveModel::from(row.clone()).insert(&self.writer).await?;
        Ok(())
    }

    /// Removes and returns a pending login: a state is usable once.
    pub async fn take_upstream_login(&self, state: &str) -> StoreResult<Option<UpstreamLoginRow>> {
        let Some(row) = upstream_login::Entity::find_by_id(state.to_owned()).one(&self.db).await? else {
            return Ok(None);
        };
        let deleted = upstream_login::Entity::delete_by_id(state.to_owned()).exec(&self.writer).await?;
        Ok((deleted.rows_affected == 1).then_some(row))
    }

    /// Stores the upstream grant of a session, replacing any earlier one. A replacement gets a
    /// later `version` than the grant it replaces, so a refresh of the old grant still in flight
    /// cannot store its tokens over the new ones.
    pub async fn upsert_upstream_session(&self, row: &UpstreamSessionRow) -> StoreResult<()> {
        let mut row = row.clone();
        if let Some(previous) = upstream_session::Entity::find_by_id(row.sid.clone()).one(&self.writer).await? {
            row.version = row.version.max(previous.version.saturating_add(1));
        }
        upstream_session::Entity::delete_by_id(row.sid.clone()).exec(&self.writer).await?;
        let sid = row.sid.clone();
        upstream_session::ActiveModel::from(row).insert(&self.writer).await?;
        self.cache.forget_upstream(&sid);
        Ok(())
    }

    /// Until when this node last saw the session's upstream grant usable (a read it may skip
    /// until then: the grant's access token is fresh, and an ended grant ends the session,
    /// which callers check first).
    pub fn upstream_usable_until(&self, sid: &str) -> Option<i64> {
        self.cache.upstream_usable_until(sid)
    }

    /// Remembers `until` for `upstream_usable_until`; `seen` is `cache_generation()` taken
    /// before the row was read.
    pub fn remember_upstream_usable_until(&self, sid: &str, until: i64, seen: u64) {
        self.cache.put_upstream_usable_until(sid, until, seen);
    }

    pub async fn upstream_session(&self, sid: &str) -> StoreResult<Option<UpstreamSessionRow>> {
        Ok(upstream_session::Entity::find_by_id(sid.to_owned()).one(&self.db).await?)
    }

    /// Takes the refresh lease of an upstream session for `owner` until `until`, if nobody
    /// refreshed since `version` was read, the grant is not dead, and nobody holds the lease (or
    /// its holder's time ran out). One conditional UPDATE, so it holds across nodes that share
    /// the database. True when `owner` now holds the lease.
    pub async fn take_refresh_lease(&self, sid: &str, version: i64, owner: &str, now: i64, until: i64) -> StoreResult<bool> {
        let result = upstream_session::Entity::update_many()
            .col_expr(upstream_session::Column::RefreshLeaseOwner, Expr::value(owner))
            .col_expr(upstream_session::Column::RefreshLeaseUntil, Expr::value(until))
            .filter(upstream_session::Column::Sid.eq(sid))
            .filter(upstream_session::Column::Version.eq(version))
            .filter(upstream_session::Column::Dead.eq(false))
            .filter(
                Condition::any()
                    .add(upstream_session::Column::RefreshLeaseUntil.is_null())
                    .add(upstream_session::Column::RefreshLeaseUntil.lte(now)),
            )
            .exec(&self.writer)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Gives the refresh lease back (the refresh failed for now), if `owner` still holds it.
    pub async fn release_refresh_lease(&self, sid: &str, owner: &str) -> StoreResult<()> {
        upstream_session::Entity::update_many()
            .col_expr(upstream_session::Column::RefreshLeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(upstream_session::Column::RefreshLeaseUntil, Expr::value(Option::<i64>::None))
            .filter(upstream_session::Column::Sid.eq(sid))
            .filter(upstream_session::Column::RefreshLeaseOwner.eq(owner))
            .exec(&self.writer)
            .await?;
        Ok(())
    }

    /// Stores refreshed tokens if nobody else stored any since `version` was read (the version
    /// is the compare-and-set: the tokens came from that version's refresh token), and frees
    /// the refresh lease.
    pub async fn swap_upstream_tokens(
        &self,
        sid: &str,
        version: i64,
        tokens_sealed: &str,
        expires_at: Option<i64>,
        now: i64,
    ) -> StoreResult<bool> {
        let result = upstream_session::Entity::update_many()
            .col_expr(upstream_session::Column::TokensSealed, Expr::value(tokens_sealed))
            .col_expr(upstream_session::Column::ExpiresAt, Expr::value(expires_at))
            .col_expr(upstream_session::Column::Version, Expr::value(version + 1))
            .col_expr(upstream_session::Column::UpdatedAt, Expr::value(now))
            .col_expr(upstream_session::Column::RefreshLeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(upstream_session::Column::RefreshLeaseUntil, Expr::value(Option::<i64>::None))
            .filter(upstream_session::Column::Sid.eq(sid))
            .filter(upstream_session::Column::Version.eq(version))
            .exec(&self.writer)
            .await?;
        self.cache.forget_upstream(sid);
        Ok(result.rows_affected == 1)
    }

    /// Marks the grant dead after its refresh was refused, if `owner` still holds the lease on
    /// `version`: a refusal of a refresh token that someone else has replaced since says nothing
    /// about the grant as it is now. True when marked.
    pub async fn mark_upstream_refused(&self, sid: &str, version: i64, owner: &str, now: i64) -> StoreResult<bool> {
        let result = upstream_session::Entity::update_many()
            .col_expr(upstream_session::Column::Dead, Expr::value(true))
            .col_expr(upstream_session::Column::UpdatedAt, Expr::value(now))
            .col_expr(upstream_session::Column::RefreshLeaseOwner, Expr::value(Option::<String>::None))
            .col_expr(upstream_session::Column::RefreshLeaseUntil, Expr::value(Option::<i64>::None))
            .filter(upstream_session::Column::Sid.eq(sid))
            .filter(upstream_session::Column::Version.eq(version))
            .filter(upstream_session::Column::RefreshLeaseOwner.eq(owner))
            .exec(&self.writer)
            .await?;
        self.cache.forget_upstream(sid);
        Ok(result.rows_affected == 1)
    }

    pub async fn delete_upstream_session(&self, sid: &str) -> StoreResult<()> {
        upstream_session::Entity::delete_by_id(sid.to_owned()).exec(&self.writer).await?;
        self.cache.forget_upstream(sid);
        Ok(())
    }

    /// Our ATProto client keys, newest first.
    pub async fn atproto_client_keys(&self) -> StoreResult<Vec<atproto_client_key::Model>> {
        Ok(atproto_client_key::Entity::find().order_by_desc(atproto_client_key::Column::CreatedAt).all(&self.db).await?)
    }

    pub async fn insert_atproto_client_key(&self, kid: &str, sealed_pem: &str, now: i64) -> StoreResult<()> {
        atproto_client_key::ActiveModel { kid: Set(kid.to_owned()), private_key_sealed: Set(sealed_pem.to_owned()), created_at: Set(now) }
            .insert(&self.writer)
            .await?;
        Ok(())
    }
}

pub(super) async fn sweep(db: &impl ConnectionTrait, now: i64) -> StoreResult<u64> {
    let logins = upstream_login::Entity::delete_many().filter(upstream_login::Column::ExpiresAt.lte(now)).exec(db).await?;
    Ok(logins.rows_affected)
}

#[cfg(test)]
mod tests {
    use super::UpstreamSessionRow;
    use crate::store::Store;

    async fn store_with_session() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display()), 2).await.unwrap();
        store
            .upsert_upstream_session(&UpstreamSessionRow {
                sid: "sid".into(),
                did: "did:plc:alice".into(),
                tokens_sealed: "sealed-0".into(),
                expires_at: Some(1),
                dead: false,
                version: 0,
                created_at: 1,
                updated_at: 1,
                refresh_lease_until: None,
                refresh_lease_owner: None,
            })
            .await
            .unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn one_lease_holder_until_its_time_runs_out() {
        let (_dir, store) = store_with_session().await;
        assert!(store.take_refresh_lease("sid", 0, "a", 100, 130).await.unwrap());
        assert!(!store.take_refresh_lease("sid", 0, "b", 100, 130).await.unwrap(), "held");
        assert!(!store.take_refresh_lease("sid", 0, "b", 129, 159).await.unwrap(), "still held");
        assert!(!store.take_refresh_lease("unknown", 0, "b", 200, 230).await.unwrap());
        // The holder's time ran out: another request may take over.
        assert!(store.take_refresh_lease("sid", 0, "b", 130, 160).await.unwrap());
        // The first holder's late refusal says nothing about the grant now: not marked.
        assert!(!store.mark_upstream_refused("sid", 0, "a", 131).await.unwrap());
        // Releasing needs the lease.
        store.release_refresh_lease("sid", "a").await.unwrap();
        assert_eq!(store.upstream_session("sid").await.unwrap().unwrap().refresh_lease_owner.as_deref(), Some("b"));
        store.release_refresh_lease("sid", "b").await.unwrap();
        let row = store.upstream_session("sid").await.unwrap().unwrap();
        assert_eq!((row.refresh_lease_owner, row.refresh_lease_until), (None, None));
    }

    #[tokio::test]
    async fn a_replaced_grant_is_safe_from_a_refresh_of_the_old_one() {
        let (_dir, store) = store_with_session().await;
        assert!(store.take_refresh_lease("sid", 0, "old", 100, 130).await.unwrap());
        // The user signs in again meanwhile: the session's grant is replaced.
        let mut replacement = store.upstream_session("sid").await.unwrap().unwrap();
        (replacement.tokens_sealed, replacement.version, replacement.refresh_lease_owner, replacement.refresh_lease_until) =
            ("sealed-new".into(), 0, None, None);
        store.upsert_upstream_session(&replacement).await.unwrap();
        assert!(!store.swap_upstream_tokens("sid", 0, "sealed-old-refreshed", Some(4000), 101).await.unwrap());
        assert!(!store.mark_upstream_refused("sid", 0, "old", 101).await.unwrap());
        let row = store.upstream_session("sid").await.unwrap().unwrap();
        assert_eq!((row.tokens_sealed.as_str(), row.version, row.dead), ("sealed-new", 1, false));
    }

    #[tokio::test]
    async fn storing_new_tokens_bumps_the_version_and_frees_the_lease() {
        let (_dir, store) = store_with_session().await;
        assert!(store.take_refresh_lease("sid", 0, "a", 100, 130).await.unwrap());
        assert!(store.swap_upstream_tokens("sid", 0, "sealed-1", Some(4000), 101).await.unwrap());
        assert!(!store.swap_upstream_tokens("sid", 0, "sealed-late", Some(4000), 102).await.unwrap(), "compare-and-set on the version");
        let row = store.upstream_session("sid").await.unwrap().unwrap();
        assert_eq!((row.version, row.tokens_sealed.as_str(), row.refresh_lease_owner), (1, "sealed-1", None));
        // A lease for the old version is refused: its refresh token is spent.
        assert!(!store.take_refresh_lease("sid", 0, "b", 200, 230).await.unwrap());
        assert!(store.take_refresh_lease("sid", 1, "b", 200, 230).await.unwrap());
        assert!(store.mark_upstream_refused("sid", 1, "b", 201).await.unwrap());
        let row = store.upstream_session("sid").await.unwrap().unwrap();
        assert!(row.dead && row.refresh_lease_owner.is_none());
        assert!(!store.take_refresh_lease("sid", 1, "c", 300, 330).await.unwrap(), "no refresh of a dead grant");
    }
}
