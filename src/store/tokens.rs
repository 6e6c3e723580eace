//! Grant families (one row per grant: its current refresh-token generation) and the revocation of
//! access tokens, which have no row of their own. The token formats are `oidc::grant_token`'s.
use sea_orm::{sea_query::Expr, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};

use super::{
    entities::{authorization_code, grant_family, legacy_access_token, legacy_refresh_token, revoked_access_token},
    invalidation::Change,
    Store, StoreResult,
};

pub use grant_family::Model as GrantFamily;

/// An access token we issued, as its verified claims and its family say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessTokenRecord {
    pub jti: String,
    pub family_id: String,
    pub client_id: String,
    pub did: String,
    pub sid: String,
    pub scope: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// A refresh token from before grant families: the family it belongs to, and whether it had
/// been rotated (presenting a rotated one is a reuse).
#[derive(Clone, Debug)]
pub struct LegacyRefreshToken {
    pub family_id: String,
    pub rotated: bool,
}

/// What a token response spends: the authorization code (which starts a family) or a refresh
/// (which moves the family from `generation` to `generation + 1`).
#[derive(Clone, Debug)]
pub enum Spend {
    Code {
        code_hash: String,
    },
    /// `presented` is the generation the client presented: the same as `generation`, except for
    /// a retry of a lost response, where the unused `generation` is spent in its place. It is
    /// remembered as the family's `retry_generation`, so another retry finds it.
    Refresh {
        family_id: String,
        generation: i64,
        presented: i64,
    },
}

impl Spend {
    /// The generation of the refresh token this spend issues.
    pub fn next_generation(&self) -> i64 {
        match self {
            Spend::Code { .. } => 1,
            Spend::Refresh { generation, .. } => generation + 1,
        }
    }
}

impl Store {
    /// Spends the code or moves the family on (a compare-and-set: of two concurrent
    /// presentations exactly one wins) and, for a code, stores the new family in the same write.
    /// `family` is the family as it stands after this response. Returns false when the code or
    /// generation had already been spent, or the family revoked: nothing changed.
    pub async fn spend_and_store(&self, spend: Spend, now: i64, family: &GrantFamily) -> StoreResult<bool> {
        let seen = self.cache.generation();
        let (row, spent) = (family.clone(), spend.clone());
        let stored = match &spend {
            // Without group commit (Postgres), each spend is one statement outside a transaction:
            // one round trip instead of four.
            Spend::Refresh { family_id, generation, presented } if !self.write_queue.is_batched() => {
                rotate(&self.writer, family_id, *generation, *presented, now, family.expires_at).await? == 1
            }
            Spend::Code { code_hash } if !self.write_queue.is_batched() => {
                spend_code_and_start_family(&self.writer, code_hash, now, family).await? == 1
            }
            _ => {
                self.write_queue
                    .write(move |txn| {
                        let (spend, row) = (spend.clone(), row.clone());
                        Box::pin(async move {
                            match &spend {
                                Spend::Code { .. } => {
                                    if spend_code_in(txn, &spend, now).await? != 1 {
                                        return Ok(false);
                                    }
                                    grant_family::Entity::insert(grant_family::ActiveModel::from(row)).exec_without_returning(txn).await?;
                                    Ok(true)
                                }
                                Spend::Refresh { family_id, generation, presented } => {
                                    Ok(rotate(txn, family_id, *generation, *presented, now, row.expires_at).await? == 1)
                                }
                            }
                        })
                    })
                    .await?
            }
        };
        if let Spend::Code { code_hash } = &spent {
            self.cache.forget_code(code_hash);
        }
        if stored {
            // The next refresh of this family presents the generation just issued; it usually
            // comes back to this node.
            self.cache.put_family(family, seen);
        }
        Ok(stored)
    }

    /// A grant family, from the cache when this node has it. Its revocation is exact (every
    /// revocation clears the cache); its generation and expiry may be behind another node's
    /// rotation, which the compare-and-set and `grant_family_in_db` settle.
    pub async fn grant_family(&self, family_id: &str) -> StoreResult<Option<GrantFamily>> {
        if let Some(family) = self.cache.family(family_id) {
            return Ok(Some(family));
        }
        let seen = self.cache.generation();
        let family = self.grant_family_in_db(family_id).await?;
        if let Some(family) = &family {
            self.cache.put_family(family, seen);
        }
        Ok(family)
    }

    /// The family as the database has it now.
    pub async fn grant_family_in_db(&self, family_id: &str) -> StoreResult<Option<GrantFamily>> {
        Ok(grant_family::Entity::find_by_id(family_id.to_owned()).one(&self.db).await?)
    }

    /// A refresh token from before grant families, by the hash of the whole token.
    pub async fn legacy_refresh_token(&self, token_hash: &str) -> StoreResult<Option<LegacyRefreshToken>> {
        Ok(legacy_refresh_token::Entity::find_by_id(token_hash.to_owned())
            .one(&self.db)
            .await?
            .map(|row| LegacyRefreshToken { family_id: row.family_id, rotated: row.rotated_at.is_some() }))
    }

    /// The family of an access token from before grant families (by the hash of the whole
    /// token); None when unknown or revoked on its own before the upgrade.
    pub async fn legacy_access_token_family(&self, token_hash: &str) -> StoreResult<Option<String>> {
        Ok(legacy_access_token::Entity::find()
            .filter(legacy_access_token::Column::TokenHash.eq(token_hash))
            .one(&self.db)
            .await?
            .filter(|row| row.revoked_at.is_none())
            .map(|row| row.family_id))
    }

    /// A validated access token's record, if this node has checked the token since the last
    /// revocation anywhere.
    pub fn cached_access_token(&self, token_hash: &str) -> Option<AccessTokenRecord> {
        self.cache.access_token(token_hash)
    }

    /// Remembers a validated access token; `seen` is `cache_generation()` taken before the
    /// checks read the database.
    pub fn remember_access_token(&self, token_hash: &str, record: &AccessTokenRecord, seen: u64) {
        self.cache.put_access_token(token_hash, record, seen);
    }

    /// Whether this access token was revoked on its own (RFC 7009).
    pub async fn access_token_revoked(&self, jti: &str) -> StoreResult<bool> {
        Ok(revoked_access_token::Entity::find_by_id(jti.to_owned())
            .select_only()
            .column(revoked_access_token::Column::Jti)
            .into_tuple::<String>()
            .one(&self.db)
            .await?
            .is_some())
    }

    /// Revokes a grant family: its refresh token and every access token it issued (code replay,
    /// refresh reuse, revocation of a refresh token).
    pub async fn revoke_family(&self, family_id: &str, now: i64) -> StoreResult<()> {
        self.revoke_where(grant_family::Column::FamilyId.eq(family_id), now).await
    }

    /// Revokes every grant issued under an SSO session, for all clients.
    pub async fn revoke_session_tokens(&self, sid: &str, now: i64) -> StoreResult<()> {
        self.revoke_where(grant_family::Column::Sid.eq(sid), now).await
    }

    /// Revokes one access token until it would have expired anyway.
    pub async fn revoke_access_token(&self, jti: &str, expires_at: i64) -> StoreResult<()> {
        let txn = sea_orm::TransactionTrait::begin(&self.writer).await?;
        revoked_access_token::Entity::insert(revoked_access_token::ActiveModel { jti: Set(jti.to_owned()), expires_at: Set(expires_at) })
            .on_conflict(sea_orm::sea_query::OnConflict::column(revoked_access_token::Column::Jti).do_nothing().to_owned())
            .exec_without_returning(&txn)
            .await?;
        self.commit_and_forget(txn, &[Change::Tokens]).await
    }

    async fn revoke_where(&self, filter: sea_orm::sea_query::SimpleExpr, now: i64) -> StoreResult<()> {
        let txn = sea_orm::TransactionTrait::begin(&self.writer).await?;
        revoke_in(&txn, filter, now).await?;
        self.commit_and_forget(txn, &[Change::Tokens]).await
    }
}

/// Revokes the grant families the filter selects, inside the caller's transaction (which
/// announces `Change::Tokens` when it commits). Their access tokens go with them: an access
/// token is active only while its family is.
pub(super) async fn revoke_in(txn: &impl ConnectionTrait, filter: sea_orm::sea_query::SimpleExpr, now: i64) -> Result<(), sea_orm::DbErr> {
    grant_family::Entity::update_many()
        .col_expr(grant_family::Column::RevokedAt, Expr::value(now))
        .filter(filter)
        .filter(grant_family::Column::RevokedAt.is_null())
        .exec(txn)
        .await?;
    Ok(())
}

pub(super) async fn sweep(db: &impl ConnectionTrait, now: i64) -> StoreResult<u64> {
    let families = grant_family::Entity::delete_many().filter(grant_family::Column::ExpiresAt.lte(now)).exec(db).await?;
    let revoked = revoked_access_token::Entity::delete_many().filter(revoked_access_token::Column::ExpiresAt.lte(now)).exec(db).await?;
    let legacy_refresh =
        legacy_refresh_token::Entity::delete_many().filter(legacy_refresh_token::Column::ExpiresAt.lte(now)).exec(db).await?;
    let legacy_access = legacy_access_token::Entity::delete_many().filter(legacy_access_token::Column::ExpiresAt.lte(now)).exec(db).await?;
    Ok(families.rows_affected + revoked.rows_affected + legacy_refresh.rows_affected + legacy_access.rows_affected)
}

/// Moves the family from `generation` to the next if it is still there and live; returns the
/// rows changed (1 = this request won the compare-and-set).
async fn rotate(
    db: &impl ConnectionTrait,
    family_id: &str,
    generation: i64,
    presented: i64,
    now: i64,
    expires_at: i64,
) -> Result<u64, sea_orm::DbErr> {
    Ok(grant_family::Entity::update_many()
        .col_expr(grant_family::Column::Generation, Expr::value(generation + 1))
        .col_expr(grant_family::Column::RetryGeneration, Expr::value(presented))
        .col_expr(grant_family::Column::RotatedAt, Expr::value(now))
        .col_expr(grant_family::Column::ExpiresAt, Expr::value(expires_at))
        .filter(grant_family::Column::FamilyId.eq(family_id))
        .filter(grant_family::Column::Generation.eq(generation))
        .filter(grant_family::Column::RevokedAt.is_null())
        .filter(grant_family::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?
        .rows_affected)
}

/// Postgres: marks the code used and, only if that won, inserts the family, in one statement (a
/// data-modifying CTE); returns the families inserted (1 = this request won).
async fn spend_code_and_start_family(
    db: &impl ConnectionTrait,
    code_hash: &str,
    now: i64,
    family: &GrantFamily,
) -> Result<u64, sea_orm::DbErr> {
    let sql = "WITH spent AS (UPDATE authorization_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL RETURNING code_hash) \
               INSERT INTO grant_families (family_id, client_id, did, sid, scope, auth_time, created_at, generation, expires_at) \
               SELECT $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM spent";
    let values: [sea_orm::Value; 11] = [
        now.into(),
        code_hash.into(),
        family.family_id.as_str().into(),
        family.client_id.as_str().into(),
        family.did.as_str().into(),
        family.sid.as_str().into(),
        family.scope.as_str().into(),
        family.auth_time.into(),
        family.created_at.into(),
        family.generation.into(),
        family.expires_at.into(),
    ];
    let statement = sea_orm::Statement::from_sql_and_values(sea_orm::DatabaseBackend::Postgres, sql, values);
    Ok(db.execute(statement).await?.rows_affected())
}

/// Marks the code used if it still can be; returns the rows changed (1 = this request won).
pub(super) async fn spend_code_in(txn: &impl ConnectionTrait, spend: &Spend, now: i64) -> Result<u64, sea_orm::DbErr> {
    let Spend::Code { code_hash } = spend else {
        return Ok(0);
    };
    Ok(authorization_code::Entity::update_many()
        .col_expr(authorization_code::Column::UsedAt, Expr::value(now))
        .filter(authorization_code::Column::CodeHash.eq(code_hash.as_str()))
        .filter(authorization_code::Column::UsedAt.is_null())
        .exec(txn)
        .await?
        .rows_affected)
}

#[cfg(feature = "bench-seam")]
impl Store {
    /// Bulk rows for the growth benchmark (users and grant families), in one transaction.
    pub async fn insert_seed_batch(
        &self,
        users: Vec<crate::store::users::UserProfile>,
        families: Vec<GrantFamily>,
        now: i64,
    ) -> StoreResult<()> {
        use super::entities::user;
        let txn = sea_orm::TransactionTrait::begin(&self.writer).await?;
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
        if !families.is_empty() {
            grant_family::Entity::insert_many(families.into_iter().map(grant_family::ActiveModel::from)).exec(&txn).await?;
        }
        txn.commit().await?;
        Ok(())
    }
}
