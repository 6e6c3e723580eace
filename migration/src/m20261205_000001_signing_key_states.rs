//! Signing keys have three states (issue 13): published from creation, active from
//! `activates_at`, retired from `retired_at`. Existing keys were active from their creation.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    ActivatesAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SigningKeys::Table)
                    .add_column(ColumnDef::new(SigningKeys::ActivatesAt).big_integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        manager.get_connection().execute_unprepared("UPDATE signing_keys SET activates_at = created_at").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(SigningKeys::Table).drop_column(SigningKeys::ActivatesAt).to_owned()).await
    }
}
