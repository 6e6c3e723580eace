//! Benchmark seam (feature `bench-seam`, used by scripts/bench.sh only): a first-party client and
//! an SSO session created through the same library seam the integration tests use, and bulk
//! seeding for the growth benchmark. Nothing here is reachable over HTTP.
use serde_json::json;

use crate::{
    clock::now,
    crypto::{random_token, sha256_b64},
    oidc::clients::{self, NewClient},
    state::AppState,
    store::{tokens::GrantFamily, users::UserProfile},
};

/// Registers a client, opens a session with remembered consent, and returns the driver's target
/// description (issuer, client credentials, redirect URI, session cookie).
pub async fn setup(state: &AppState, redirect_uri: &str) -> Result<serde_json::Value, String> {
    let (client, secret) = clients::register(
        &state.store,
        NewClient {
            name: format!("bench-{}", random_token(4)),
            redirect_uris: vec![redirect_uri.to_owned()],
            first_party: true,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let profile = UserProfile {
        did: "did:plc:benchuser00000000000000".into(),
        handle: Some("bench.test".into()),
        display_name: Some("Bench User".into()),
        avatar: None,
        email: Some("bench@example.test".into()),
        email_verified: Some(true),
    };
    let session = crate::sso::establish_session(state, &profile).await.map_err(|e| e.to_string())?;
    Ok(json!({
        "name": "atsso",
        "issuer": state.config.issuer(),
        "client_id": client.client_id,
        "client_secret": secret,
        "redirect_uri": redirect_uri,
        "scope": "openid profile email offline_access",
        "cookie": format!("{}={}", crate::sso::SESSION_COOKIE, session.cookie_value),
    }))
}

/// Adds `users` users and `refresh_tokens` live grant families (one refresh token each, spread
/// over those users).
pub async fn seed(state: &AppState, users: usize, refresh_tokens: usize) -> Result<(), String> {
    const BATCH: usize = 2000;
    let now = now();
    let did = |i: usize| format!("did:plc:seed{i:020}");
    for start in (0..users).step_by(BATCH) {
        let batch = (start..(start + BATCH).min(users))
            .map(|i| UserProfile { did: did(i), handle: Some(format!("seed{i}.test")), ..Default::default() })
            .collect();
        state.store.insert_seed_batch(batch, Vec::new(), now).await.map_err(|e| e.to_string())?;
    }
    for start in (0..refresh_tokens).step_by(BATCH) {
        let batch = (start..(start + BATCH).min(refresh_tokens))
            .map(|i| GrantFamily {
                // Spread like real (random) family ids, so the index grows as it would.
                family_id: sha256_b64(&format!("seed-family-{i}"))[..22].to_owned(),
                client_id: "seed-client".into(),
                did: did(i % users.max(1)),
                sid: format!("seedsid{}", i % users.max(1)),
                scope: "openid profile".into(),
                auth_time: now,
                created_at: now,
                generation: 1,
                retry_generation: None,
                rotated_at: None,
                expires_at: now + 30 * 86400,
                revoked_at: None,
            })
            .collect();
        state.store.insert_seed_batch(Vec::new(), batch, now).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Signatures per second with our own signing code (josekit/OpenSSL), on `threads` threads for
/// `seconds`: the physical limit the token endpoint is measured against.
pub fn signing_rate(threads: usize, seconds: f64) -> Result<serde_json::Value, String> {
    use crate::crypto::signing::{generate_key, Alg, KeySet, StoredKey};
    let keys: Result<Vec<StoredKey>, String> = [Alg::Rs256, Alg::Es256]
        .into_iter()
        .map(|alg| {
            let key = generate_key(alg).map_err(|e| e.to_string())?;
            Ok(StoredKey { kid: key.kid, alg, private_pem: key.private_pem, created_at: 1, activates_at: 1, retired_at: None })
        })
        .collect();
    let set = std::sync::Arc::new(KeySet::new(keys?).map_err(|e| e.to_string())?);
    let mut results = serde_json::Map::new();
    for alg in [Alg::Rs256, Alg::Es256] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(seconds);
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let set = set.clone();
                std::thread::spawn(move || {
                    let mut count = 0u64;
                    let mut claims = serde_json::Map::new();
                    claims.insert("sub".into(), "did:plc:benchuser00000000000000".into());
                    claims.insert("iss".into(), "http://127.0.0.1:8080".into());
                    while std::time::Instant::now() < deadline {
                        if set.sign(alg, "JWT", claims.clone()).is_ok() {
                            count += 1;
                        }
                    }
                    count
                })
            })
            .collect();
        let total: u64 = workers.into_iter().map(|w| w.join().unwrap_or(0)).sum();
        results.insert(alg.as_str().into(), json!((total as f64 / seconds).round()));
    }
    Ok(json!({ "threads": threads, "signatures_per_second": results }))
}
