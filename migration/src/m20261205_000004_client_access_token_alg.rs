//! A client may have its own access-token algorithm (`RS256` or `ES256`); NULL, what every
//! existing client starts with, follows `ATSSO_ACCESS_TOKEN_ALG`.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Clients {
    Table,
    AccessTokenAlg,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Clients::Table).add_column(ColumnDef::new(Clients::AccessTokenAlg).string().null()).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(Clients::Table).drop_column(Clients::AccessTokenAlg).to_owned()).await
    }
}
