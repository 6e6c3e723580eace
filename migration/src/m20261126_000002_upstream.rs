//! The ATProto side: pending upstream logins, upstream sessions (sealed tokens + DPoP key) and
//! our ATProto client's ES256 key.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UpstreamLogins {
    Table,
    State,
    RequestId,
    BrowserBinding,
    PendingSealed,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum UpstreamSessions {
    Table,
    Sid,
    Did,
    TokensSealed,
    ExpiresAt,
    Dead,
    Version,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AtprotoClientKeys {
    Table,
    Kid,
    PrivateKeySealed,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UpstreamLogins::Table)
                    .col(ColumnDef::new(UpstreamLogins::State).string().not_null().primary_key())
                    .col(ColumnDef::new(UpstreamLogins::RequestId).string())
                    .col(ColumnDef::new(UpstreamLogins::BrowserBinding).string().not_null())
                    .col(ColumnDef::new(UpstreamLogins::PendingSealed).text().not_null())
                    .col(ColumnDef::new(UpstreamLogins::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(UpstreamLogins::ExpiresAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UpstreamSessions::Table)
                    .col(ColumnDef::new(UpstreamSessions::Sid).string().not_null().primary_key())
                    .col(ColumnDef::new(UpstreamSessions::Did).string().not_null())
                    .col(ColumnDef::new(UpstreamSessions::TokensSealed).text().not_null())
                    .col(ColumnDef::new(UpstreamSessions::ExpiresAt).big_integer())
                    .col(ColumnDef::new(UpstreamSessions::Dead).boolean().not_null())
                    .col(ColumnDef::new(UpstreamSessions::Version).big_integer().not_null())
                    .col(ColumnDef::new(UpstreamSessions::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(UpstreamSessions::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("idx_upstream_sessions_did").table(UpstreamSessions::Table).col(UpstreamSessions::Did).to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AtprotoClientKeys::Table)
                    .col(ColumnDef::new(AtprotoClientKeys::Kid).string().not_null().primary_key())
                    .col(ColumnDef::new(AtprotoClientKeys::PrivateKeySealed).text().not_null())
                    .col(ColumnDef::new(AtprotoClientKeys::CreatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [AtprotoClientKeys::Table.into_iden(), UpstreamSessions::Table.into_iden(), UpstreamLogins::Table.into_iden()] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
