//! One row per grant family instead of one per token. A refresh token now carries its family id
//! and generation under a MAC, and a refresh is one conditional UPDATE of the family's
//! generation; access tokens get no row at all (a rare single revocation goes into
//! `revoked_access_tokens`).
//!
//! Live tokens survive the upgrade: every family with an unrotated refresh token gets a row at
//! generation 0, which that token stands for (`refresh_tokens` and `access_tokens` stay, read-only,
//! to map an old token to its family until the last one expires and the sweeper has emptied them).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum GrantFamilies {
    Table,
    FamilyId,
    ClientId,
    Did,
    Sid,
    Scope,
    AuthTime,
    CreatedAt,
    Generation,
    RetryGeneration,
    RotatedAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum RevokedAccessTokens {
    Table,
    Jti,
    ExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(GrantFamilies::Table)
                    .col(ColumnDef::new(GrantFamilies::FamilyId).string().not_null().primary_key())
                    .col(ColumnDef::new(GrantFamilies::ClientId).string().not_null())
                    .col(ColumnDef::new(GrantFamilies::Did).string().not_null())
                    .col(ColumnDef::new(GrantFamilies::Sid).string().not_null())
                    .col(ColumnDef::new(GrantFamilies::Scope).string().not_null())
                    .col(ColumnDef::new(GrantFamilies::AuthTime).big_integer().not_null())
                    .col(ColumnDef::new(GrantFamilies::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(GrantFamilies::Generation).big_integer().not_null())
                    .col(ColumnDef::new(GrantFamilies::RetryGeneration).big_integer().null())
                    .col(ColumnDef::new(GrantFamilies::RotatedAt).big_integer().null())
                    .col(ColumnDef::new(GrantFamilies::ExpiresAt).big_integer().not_null())
                    .col(ColumnDef::new(GrantFamilies::RevokedAt).big_integer().null())
                    .to_owned(),
            )
            .await?;
        // Logout revokes by session; the sweeper deletes by expiry. (No index on client_id: a
        // client's deletion scans, rather than every grant paying one more index write.)
        manager
            .create_index(Index::create().name("idx_grant_families_sid").table(GrantFamilies::Table).col(GrantFamilies::Sid).to_owned())
            .await?;
        manager
            .create_index(
                Index::create().name("idx_grant_families_expires_at").table(GrantFamilies::Table).col(GrantFamilies::ExpiresAt).to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RevokedAccessTokens::Table)
                    .col(ColumnDef::new(RevokedAccessTokens::Jti).string().not_null().primary_key())
                    .col(ColumnDef::new(RevokedAccessTokens::ExpiresAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        // Each family's one unrotated refresh token becomes generation 0 of its family; its
        // rotated predecessors map to the family too (as older generations: presenting one is a
        // reuse). Revoked access tokens keep their revocation in the old table.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO grant_families (family_id, client_id, did, sid, scope, auth_time, created_at, generation, \
                 retry_generation, rotated_at, expires_at, revoked_at) \
                 SELECT family_id, client_id, did, sid, scope, auth_time, created_at, 0, NULL, NULL, expires_at, revoked_at \
                 FROM refresh_tokens WHERE rotated_at IS NULL AND TRUE \
                 ON CONFLICT (family_id) DO NOTHING",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(RevokedAccessTokens::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(GrantFamilies::Table).to_owned()).await
    }
}
