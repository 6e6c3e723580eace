//! The outbox: work that must happen after a response (back-channel logout deliveries, upstream
//! grant revocations), as rows any node can claim. Replaces `logout_deliveries`, whose rows are
//! carried over (pending ones become claimable at once).
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    Kind,
    Sid,
    Did,
    ClientId,
    Target,
    PayloadSealed,
    Status,
    Attempts,
    NextAttemptAt,
    ClaimedUntil,
    ClaimedBy,
    LastError,
    CreatedAt,
    UpdatedAt,
}

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
                    .table(Outbox::Table)
                    .col(ColumnDef::new(Outbox::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(Outbox::Kind).string().not_null())
                    .col(ColumnDef::new(Outbox::Sid).string().not_null())
                    .col(ColumnDef::new(Outbox::Did).string().not_null())
                    .col(ColumnDef::new(Outbox::ClientId).string())
                    .col(ColumnDef::new(Outbox::Target).text().not_null())
                    .col(ColumnDef::new(Outbox::PayloadSealed).text())
                    .col(ColumnDef::new(Outbox::Status).string().not_null())
                    .col(ColumnDef::new(Outbox::Attempts).integer().not_null().default(0))
                    .col(ColumnDef::new(Outbox::NextAttemptAt).big_integer().not_null())
                    .col(ColumnDef::new(Outbox::ClaimedUntil).big_integer())
                    .col(ColumnDef::new(Outbox::ClaimedBy).string())
                    .col(ColumnDef::new(Outbox::LastError).text())
                    .col(ColumnDef::new(Outbox::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Outbox::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        // The claim query: pending rows in due order.
        manager
            .create_index(
                Index::create().name("idx_outbox_due").table(Outbox::Table).col(Outbox::Status).col(Outbox::NextAttemptAt).to_owned(),
            )
            .await?;
        manager.create_index(Index::create().name("idx_outbox_sid").table(Outbox::Table).col(Outbox::Sid).to_owned()).await?;
        // The admin's user page.
        manager.create_index(Index::create().name("idx_outbox_did").table(Outbox::Table).col(Outbox::Did).to_owned()).await?;
        // Carry the old deliveries over; plain SQL that SQLite and Postgres both read the same.
        // A pending row is due at once; its 24 hours count from when it was created.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO outbox (id, kind, sid, did, client_id, target, payload_sealed, status, attempts, next_attempt_at, \
                 claimed_until, claimed_by, last_error, created_at, updated_at) \
                 SELECT d.id, 'backchannel_logout', d.sid, COALESCE(s.did, ''), d.client_id, d.uri, NULL, d.status, d.attempts, \
                 d.updated_at, NULL, NULL, d.last_error, d.created_at, d.updated_at \
                 FROM logout_deliveries d LEFT JOIN sso_sessions s ON s.sid = d.sid",
            )
            .await?;
        manager.drop_table(Table::drop().table(LogoutDeliveries::Table).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Outbox::Table).to_owned()).await?;
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
}
