//! The upstream ATProto permissions an admin allows a client to ask for: space-separated
//! canonical permissions without the `atproto:` prefix. Empty, what every existing client
//! starts with, allows none.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Clients {
    Table,
    AtprotoScopes,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .add_column(ColumnDef::new(Clients::AtprotoScopes).text().not_null().default(""))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(Clients::Table).drop_column(Clients::AtprotoScopes).to_owned()).await
    }
}
