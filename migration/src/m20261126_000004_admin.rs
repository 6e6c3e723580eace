//! Administration: admin API tokens (argon2-hashed, revocable) and the audit log.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AdminTokens {
    Table,
    Id,
    Name,
    Kind,
    TokenHash,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    Actor,
    Action,
    Target,
    RemoteAddr,
    Details,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AdminTokens::Table)
                    .col(ColumnDef::new(AdminTokens::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(AdminTokens::Name).string().not_null())
                    // `admin` (REST API) or `registration` (RFC 7591 initial access token only)
                    .col(ColumnDef::new(AdminTokens::Kind).string().not_null())
                    .col(ColumnDef::new(AdminTokens::TokenHash).string().not_null())
                    .col(ColumnDef::new(AdminTokens::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(AdminTokens::LastUsedAt).big_integer())
                    .col(ColumnDef::new(AdminTokens::RevokedAt).big_integer())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_admin_tokens_name").table(AdminTokens::Table).col(AdminTokens::Name).unique().to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(ColumnDef::new(AuditLog::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(AuditLog::At).big_integer().not_null())
                    .col(ColumnDef::new(AuditLog::Actor).string().not_null())
                    .col(ColumnDef::new(AuditLog::Action).string().not_null())
                    .col(ColumnDef::new(AuditLog::Target).text())
                    .col(ColumnDef::new(AuditLog::RemoteAddr).string())
                    .col(ColumnDef::new(AuditLog::Details).text())
                    .to_owned(),
            )
            .await?;
        manager.create_index(Index::create().name("idx_audit_log_at").table(AuditLog::Table).col(AuditLog::At).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(AuditLog::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(AdminTokens::Table).to_owned()).await
    }
}
