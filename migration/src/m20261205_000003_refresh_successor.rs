//! A rotated refresh token names its successor, so a token presented again can be told apart:
//! a retry of a lost response (the successor is still unused) or a reuse (it has been used).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    ReplacedBy,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(RefreshTokens::Table).add_column(ColumnDef::new(RefreshTokens::ReplacedBy).string().null()).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(RefreshTokens::Table).drop_column(RefreshTokens::ReplacedBy).to_owned()).await
    }
}
