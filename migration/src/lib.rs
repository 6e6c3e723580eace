//! Schema migrations for atsso. One file per migration; they run at start-up.
pub use sea_orm_migration::prelude::*;

mod m20261126_000001_provider_core;
mod m20261126_000002_upstream;
mod m20261126_000003_logout_deliveries;
mod m20261126_000004_admin;
mod m20261126_000005_dynamic_clients;
mod m20261127_000001_client_allow_no_pkce;
mod m20261127_000012_upstream_refresh_lease;
mod m20261205_000001_signing_key_states;
mod m20261205_000002_outbox;
mod m20261205_000003_refresh_successor;
mod m20261205_000004_client_access_token_alg;
mod m20261205_000005_grant_families;
mod m20261205_000006_client_atproto_scopes;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_provider_core::Migration),
            Box::new(m20261126_000002_upstream::Migration),
            Box::new(m20261126_000003_logout_deliveries::Migration),
            Box::new(m20261126_000004_admin::Migration),
            Box::new(m20261126_000005_dynamic_clients::Migration),
            Box::new(m20261127_000001_client_allow_no_pkce::Migration),
            Box::new(m20261127_000012_upstream_refresh_lease::Migration),
            Box::new(m20261205_000001_signing_key_states::Migration),
            Box::new(m20261205_000002_outbox::Migration),
            Box::new(m20261205_000003_refresh_successor::Migration),
            Box::new(m20261205_000004_client_access_token_alg::Migration),
            Box::new(m20261205_000005_grant_families::Migration),
            Box::new(m20261205_000006_client_atproto_scopes::Migration),
        ]
    }
}
