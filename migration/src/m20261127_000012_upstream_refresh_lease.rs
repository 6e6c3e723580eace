//! A lease on each upstream session row, so one request on one node at a time spends the
//! single-use upstream refresh token (issue 11, item 12). Both columns are empty when nobody
//! holds the lease.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UpstreamSessions {
    Table,
    RefreshLeaseUntil,
    RefreshLeaseOwner,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one change at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(UpstreamSessions::Table)
                    .add_column(ColumnDef::new(UpstreamSessions::RefreshLeaseUntil).big_integer())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(UpstreamSessions::Table)
                    .add_column(ColumnDef::new(UpstreamSessions::RefreshLeaseOwner).string())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [UpstreamSessions::RefreshLeaseOwner, UpstreamSessions::RefreshLeaseUntil] {
            manager.alter_table(Table::alter().table(UpstreamSessions::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
