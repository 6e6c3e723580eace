//! Records which clients were created by RFC 7591 dynamic registration: their logout URIs are
//! chosen by whoever held a registration token, so deliveries to them never reach loopback.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Clients {
    Table,
    ClientId,
    DynamicallyRegistered,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Action,
    Target,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Clients::Table)
                    .add_column(ColumnDef::new(Clients::DynamicallyRegistered).boolean().not_null().default(false))
                    .to_owned(),
            )
            .await?;
        // Clients registered before this column existed are known from the audit log.
        let registered = Query::select()
            .column(AuditLog::Target)
            .from(AuditLog::Table)
            .and_where(Expr::col(AuditLog::Action).eq("client.register_dynamic"))
            .and_where(Expr::col(AuditLog::Target).is_not_null())
            .to_owned();
        manager
            .exec_stmt(
                Query::update()
                    .table(Clients::Table)
                    .value(Clients::DynamicallyRegistered, true)
                    .and_where(Expr::col(Clients::ClientId).in_subquery(registered))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(Clients::Table).drop_column(Clients::DynamicallyRegistered).to_owned()).await
    }
}
