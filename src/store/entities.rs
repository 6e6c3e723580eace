//! sea-orm entities, one module per table (see migration/ for the schema).

pub mod client {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "clients")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub client_id: String,
        pub name: String,
        pub secret_hash: Option<String>,
        /// JSON array of exact-match redirect URIs.
        pub redirect_uris: String,
        /// JSON array of exact-match post-logout redirect URIs.
        pub post_logout_redirect_uris: String,
        pub backchannel_logout_uri: Option<String>,
        pub frontchannel_logout_uri: Option<String>,
        pub first_party: bool,
        /// Space-separated scopes this client may request.
        pub allowed_scopes: String,
        pub enabled: bool,
        pub created_at: i64,
        pub updated_at: i64,
        /// Created by RFC 7591 dynamic registration (not by an admin).
        pub dynamically_registered: bool,
        /// A legacy confidential client exempted from PKCE (never a public client).
        pub allow_no_pkce: bool,
        /// `RS256` or `ES256` for this client's access tokens; NULL follows the global setting.
        pub access_token_alg: Option<String>,
        /// Space-separated canonical ATProto permissions (no `atproto:` prefix) this client may
        /// ask for upstream; empty allows none.
        pub atproto_scopes: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub did: String,
        pub handle: Option<String>,
        pub display_name: Option<String>,
        pub avatar: Option<String>,
        pub email: Option<String>,
        pub email_verified: Option<bool>,
        pub created_at: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod sso_session {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sso_sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sid: String,
        /// SHA-256 of the secret half of the session cookie.
        pub secret_hash: String,
        pub did: String,
        pub auth_time: i64,
        pub created_at: i64,
        pub expires_at: i64,
        pub ended_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod authorization_request {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "authorization_requests")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub client_id: String,
        /// The validated request, JSON.
        pub params: String,
        pub created_at: i64,
        pub expires_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod consent {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "consents")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub did: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub client_id: String,
        pub scopes: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod authorization_code {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "authorization_codes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub code_hash: String,
        pub family_id: String,
        pub client_id: String,
        pub did: String,
        pub sid: String,
        pub redirect_uri: String,
        pub scope: String,
        pub nonce: Option<String>,
        pub code_challenge: Option<String>,
        pub auth_time: i64,
        pub created_at: i64,
        pub expires_at: i64,
        pub used_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A grant: what one authorization code started, and every refresh since. The one live refresh
/// token is the one carrying `generation`; older generations are spent (presenting one is a reuse).
pub mod grant_family {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "grant_families")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub family_id: String,
        pub client_id: String,
        pub did: String,
        pub sid: String,
        /// The whole grant's scope (a refresh may narrow an access token, never the grant).
        pub scope: String,
        pub auth_time: i64,
        pub created_at: i64,
        /// The generation of the one unspent refresh token (1 after the code exchange).
        pub generation: i64,
        /// The generation presented at the last rotation: within the retry window it may be
        /// presented again while `generation` is unused (its response was lost).
        pub retry_generation: Option<i64>,
        pub rotated_at: Option<i64>,
        /// When the unspent refresh token expires (each rotation moves it).
        pub expires_at: i64,
        pub revoked_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Access tokens revoked one by one (RFC 7009), kept until they would have expired.
pub mod revoked_access_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "revoked_access_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub jti: String,
        pub expires_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Refresh tokens issued before grant families (one row per token): read-only, to map a token
/// still held by an app to its family; the sweeper deletes them as they expire.
pub mod legacy_refresh_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refresh_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        pub family_id: String,
        pub client_id: String,
        pub sid: String,
        pub expires_at: i64,
        pub rotated_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Access-token records from before grant families: read-only, as `legacy_refresh_token`.
pub mod legacy_access_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "access_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub jti: String,
        /// SHA-256 of the whole token.
        pub token_hash: String,
        pub family_id: String,
        pub client_id: String,
        pub sid: String,
        pub expires_at: i64,
        pub revoked_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod signing_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "signing_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub kid: String,
        /// RS256 (ID and logout tokens, access tokens by default) or ES256 (access tokens of clients that opt in).
        pub alg: String,
        /// PKCS#8 PEM sealed with the master key.
        pub private_key_sealed: String,
        pub created_at: i64,
        /// Signs from this instant (published, not signing, before it).
        pub activates_at: i64,
        /// When its successor activated; published until its tokens have expired.
        pub retired_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod upstream_login {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "upstream_logins")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub state: String,
        pub request_id: Option<String>,
        /// SHA-256 of the browser's CSRF cookie: the callback must come from the same browser.
        pub browser_binding: String,
        pub pending_sealed: String,
        pub created_at: i64,
        pub expires_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod upstream_session {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "upstream_sessions")]
    pub struct Model {
        /// The SSO session this upstream grant backs.
        #[sea_orm(primary_key, auto_increment = false)]
        pub sid: String,
        pub did: String,
        /// UpstreamTokens (DPoP key, access + refresh token) as JSON, sealed.
        pub tokens_sealed: String,
        pub expires_at: Option<i64>,
        pub dead: bool,
        /// Compare-and-swap guard: upstream refresh tokens are single-use.
        pub version: i64,
        pub created_at: i64,
        pub updated_at: i64,
        /// While a refresh is in flight: until when its holder may call the PDS (unix seconds)...
        pub refresh_lease_until: Option<i64>,
        /// ...and who holds it (a random id per attempt).
        pub refresh_lease_owner: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod atproto_client_key {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "atproto_client_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub kid: String,
        pub private_key_sealed: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod outbox_entry {
    use sea_orm::entity::prelude::*;

    /// Work that must happen after a response, claimed by any node (see `store::outbox`).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// backchannel_logout | upstream_revoke
        pub kind: String,
        pub sid: String,
        pub did: String,
        /// The client told (back-channel logout); None for an upstream revocation.
        pub client_id: Option<String>,
        /// The back-channel logout URI, or the upstream issuer (for display).
        pub target: String,
        /// The upstream tokens to revoke, sealed; None for a back-channel logout.
        pub payload_sealed: Option<String>,
        /// pending | delivered | failed
        pub status: String,
        pub attempts: i32,
        pub next_attempt_at: i64,
        /// While a node works on the row: until when its claim holds, and which node it is.
        pub claimed_until: Option<i64>,
        pub claimed_by: Option<String>,
        pub last_error: Option<String>,
        pub created_at: i64,
        pub updated_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
