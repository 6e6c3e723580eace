//! The OpenID Connect provider's tables: clients, users, SSO sessions, pending
//! authorization requests, consents, codes, tokens and signing keys.
//! Times are unix seconds (BIGINT) so SQLite and Postgres behave the same.
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Clients {
    Table,
    ClientId,
    Name,
    SecretHash,
    RedirectUris,
    PostLogoutRedirectUris,
    BackchannelLogoutUri,
    FrontchannelLogoutUri,
    FirstParty,
    AllowedScopes,
    Enabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Did,
    Handle,
    DisplayName,
    Avatar,
    Email,
    EmailVerified,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SsoSessions {
    Table,
    Sid,
    SecretHash,
    Did,
    AuthTime,
    CreatedAt,
    ExpiresAt,
    EndedAt,
}

#[derive(DeriveIden)]
enum AuthorizationRequests {
    Table,
    Id,
    ClientId,
    Params,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Consents {
    Table,
    Did,
    ClientId,
    Scopes,
    CreatedAt,
}

#[derive(DeriveIden)]
enum AuthorizationCodes {
    Table,
    CodeHash,
    FamilyId,
    ClientId,
    Did,
    Sid,
    RedirectUri,
    Scope,
    Nonce,
    CodeChallenge,
    AuthTime,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    TokenHash,
    FamilyId,
    ClientId,
    Did,
    Sid,
    Scope,
    AuthTime,
    CreatedAt,
    ExpiresAt,
    RotatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum AccessTokens {
    Table,
    Jti,
    TokenHash,
    IssuedAt,
    FamilyId,
    ClientId,
    Did,
    Sid,
    Scope,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum SigningKeys {
    Table,
    Kid,
    Alg,
    PrivateKeySealed,
    CreatedAt,
    RetiredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Clients::Table)
                    .col(ColumnDef::new(Clients::ClientId).string().not_null().primary_key())
                    .col(ColumnDef::new(Clients::Name).string().not_null())
                    .col(ColumnDef::new(Clients::SecretHash).string())
                    .col(ColumnDef::new(Clients::RedirectUris).text().not_null())
                    .col(ColumnDef::new(Clients::PostLogoutRedirectUris).text().not_null())
                    .col(ColumnDef::new(Clients::BackchannelLogoutUri).string())
                    .col(ColumnDef::new(Clients::FrontchannelLogoutUri).string())
                    .col(ColumnDef::new(Clients::FirstParty).boolean().not_null())
                    .col(ColumnDef::new(Clients::AllowedScopes).string().not_null())
                    .col(ColumnDef::new(Clients::Enabled).boolean().not_null())
                    .col(ColumnDef::new(Clients::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Clients::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager.create_index(Index::create().name("idx_clients_name").table(Clients::Table).col(Clients::Name).unique().to_owned()).await?;

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(ColumnDef::new(Users::Did).string().not_null().primary_key())
                    .col(ColumnDef::new(Users::Handle).string())
                    .col(ColumnDef::new(Users::DisplayName).string())
                    .col(ColumnDef::new(Users::Avatar).text())
                    .col(ColumnDef::new(Users::Email).string())
                    .col(ColumnDef::new(Users::EmailVerified).boolean())
                    .col(ColumnDef::new(Users::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Users::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager.create_index(Index::create().name("idx_users_handle").table(Users::Table).col(Users::Handle).to_owned()).await?;

        manager
            .create_table(
                Table::create()
                    .table(SsoSessions::Table)
                    .col(ColumnDef::new(SsoSessions::Sid).string().not_null().primary_key())
                    .col(ColumnDef::new(SsoSessions::SecretHash).string().not_null())
                    .col(ColumnDef::new(SsoSessions::Did).string().not_null())
                    .col(ColumnDef::new(SsoSessions::AuthTime).big_integer().not_null())
                    .col(ColumnDef::new(SsoSessions::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(SsoSessions::ExpiresAt).big_integer().not_null())
                    .col(ColumnDef::new(SsoSessions::EndedAt).big_integer())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(Index::create().name("idx_sso_sessions_did").table(SsoSessions::Table).col(SsoSessions::Did).to_owned())
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuthorizationRequests::Table)
                    .col(ColumnDef::new(AuthorizationRequests::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(AuthorizationRequests::ClientId).string().not_null())
                    .col(ColumnDef::new(AuthorizationRequests::Params).text().not_null())
                    .col(ColumnDef::new(AuthorizationRequests::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(AuthorizationRequests::ExpiresAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Consents::Table)
                    .col(ColumnDef::new(Consents::Did).string().not_null())
                    .col(ColumnDef::new(Consents::ClientId).string().not_null())
                    .col(ColumnDef::new(Consents::Scopes).string().not_null())
                    .col(ColumnDef::new(Consents::CreatedAt).big_integer().not_null())
                    .primary_key(Index::create().col(Consents::Did).col(Consents::ClientId))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AuthorizationCodes::Table)
                    .col(ColumnDef::new(AuthorizationCodes::CodeHash).string().not_null().primary_key())
                    .col(ColumnDef::new(AuthorizationCodes::FamilyId).string().not_null())
                    .col(ColumnDef::new(AuthorizationCodes::ClientId).string().not_null())
                    .col(ColumnDef::new(AuthorizationCodes::Did).string().not_null())
                    .col(ColumnDef::new(AuthorizationCodes::Sid).string().not_null())
                    .col(ColumnDef::new(AuthorizationCodes::RedirectUri).text().not_null())
                    .col(ColumnDef::new(AuthorizationCodes::Scope).string().not_null())
                    .col(ColumnDef::new(AuthorizationCodes::Nonce).text())
                    .col(ColumnDef::new(AuthorizationCodes::CodeChallenge).string())
                    .col(ColumnDef::new(AuthorizationCodes::AuthTime).big_integer().not_null())
                    .col(ColumnDef::new(AuthorizationCodes::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(AuthorizationCodes::ExpiresAt).big_integer().not_null())
                    .col(ColumnDef::new(AuthorizationCodes::UsedAt).big_integer())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    .col(ColumnDef::new(RefreshTokens::TokenHash).string().not_null().primary_key())
                    .col(ColumnDef::new(RefreshTokens::FamilyId).string().not_null())
                    .col(ColumnDef::new(RefreshTokens::ClientId).string().not_null())
                    .col(ColumnDef::new(RefreshTokens::Did).string().not_null())
                    .col(ColumnDef::new(RefreshTokens::Sid).string().not_null())
                    .col(ColumnDef::new(RefreshTokens::Scope).string().not_null())
                    .col(ColumnDef::new(RefreshTokens::AuthTime).big_integer().not_null())
                    .col(ColumnDef::new(RefreshTokens::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(RefreshTokens::ExpiresAt).big_integer().not_null())
                    .col(ColumnDef::new(RefreshTokens::RotatedAt).big_integer())
                    .col(ColumnDef::new(RefreshTokens::RevokedAt).big_integer())
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_refresh_tokens_family", RefreshTokens::FamilyId),
            ("idx_refresh_tokens_sid", RefreshTokens::Sid),
            ("idx_refresh_tokens_expires", RefreshTokens::ExpiresAt),
        ] {
            manager.create_index(Index::create().name(name).table(RefreshTokens::Table).col(col).to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(AccessTokens::Table)
                    .col(ColumnDef::new(AccessTokens::Jti).string().not_null().primary_key())
                    .col(ColumnDef::new(AccessTokens::TokenHash).string().not_null().unique_key())
                    .col(ColumnDef::new(AccessTokens::IssuedAt).big_integer().not_null())
                    .col(ColumnDef::new(AccessTokens::FamilyId).string().not_null())
                    .col(ColumnDef::new(AccessTokens::ClientId).string().not_null())
                    .col(ColumnDef::new(AccessTokens::Did).string().not_null())
                    .col(ColumnDef::new(AccessTokens::Sid).string().not_null())
                    .col(ColumnDef::new(AccessTokens::Scope).string().not_null())
                    .col(ColumnDef::new(AccessTokens::ExpiresAt).big_integer().not_null())
                    .col(ColumnDef::new(AccessTokens::RevokedAt).big_integer())
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_access_tokens_family", AccessTokens::FamilyId),
            ("idx_access_tokens_sid", AccessTokens::Sid),
            ("idx_access_tokens_expires", AccessTokens::ExpiresAt),
        ] {
            manager.create_index(Index::create().name(name).table(AccessTokens::Table).col(col).to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(SigningKeys::Table)
                    .col(ColumnDef::new(SigningKeys::Kid).string().not_null().primary_key())
                    .col(ColumnDef::new(SigningKeys::Alg).string().not_null())
                    .col(ColumnDef::new(SigningKeys::PrivateKeySealed).text().not_null())
                    .col(ColumnDef::new(SigningKeys::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(SigningKeys::RetiredAt).big_integer())
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SigningKeys::Table.into_iden(),
            AccessTokens::Table.into_iden(),
            RefreshTokens::Table.into_iden(),
            AuthorizationCodes::Table.into_iden(),
            Consents::Table.into_iden(),
            AuthorizationRequests::Table.into_iden(),
            SsoSessions::Table.into_iden(),
            Users::Table.into_iden(),
            Clients::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
