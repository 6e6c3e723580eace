//! Back-channel logout deliveries, recorded so operators can see which apps were told.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LogoutDeliveries {
    Table,
    Id,
    Sid,
    ClientId,
    Uri,
    Status,
    Attempts,
    LastError,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LogoutDeliveries::Table)
                    .col(ColumnDef::new(LogoutDeliveries::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(LogoutDeliveries::Sid).string().not_null())
                    .col(ColumnDef::new(LogoutDeliveries::ClientId).string().not_null())
                    .col(ColumnDef::new(LogoutDeliveries::Uri).text().not_null())
                    .col(ColumnDef::new(LogoutDeliveries::Status).string().not_null())
                    .col(ColumnDef::new(LogoutDeliveries::Attempts).integer().not_null())
                    .col(ColumnDef::new(LogoutDeliveries::LastError).text())
                    .col(ColumnDef::new(LogoutDeliveries::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(LogoutDeliveries::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_logout_deliveries_sid").table(LogoutDeliveries::Table).col(LogoutDeliveries::Sid).to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(LogoutDeliveries::Table).to_owned()).await
    }
}
