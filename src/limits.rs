//! Abuse limits: how much work one source address (or one client) may cause per minute.
//! Counting is `governor`'s (GCRA, keyed); limits are per node (several nodes multiply them).
//! Expensive entry points count every request; authentication counts failures only, so a busy
//! legitimate client is never limited by its own successes.
use std::{hash::Hash, net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use governor::{clock::Clock, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimits;

/// A refusal: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds for a `Retry-After` header (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

fn quota(per_minute: u32) -> Option<Quota> {
    NonZeroU32::new(per_minute).map(|n| Quota::per_minute(n).allow_burst(n))
}

/// Counts every request of a key; `None` when the limit is off.
pub struct RateLimit<K: Hash + Eq + Clone> {
    limiter: Option<DefaultKeyedRateLimiter<K>>,
}

impl<K: Hash + Eq + Clone> RateLimit<K> {
    pub fn per_minute(per_minute: u32) -> Self {
        Self { limiter: quota(per_minute).map(RateLimiter::keyed) }
    }

    /// Counts one request of `key`; refused once the key is over its limit.
    pub fn check(&self, key: &K) -> Result<(), Limited> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(key)
            .map_err(|not_until| Limited { retry_after: not_until.wait_time_from(governor::clock::DefaultClock::default().now()) })
    }

    fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// Counts failures of a key; once over the limit, every request of that key is refused (before
/// any expensive work) until the limit has room again.
pub struct FailureLimit<K: Hash + Eq + Clone + Send + Sync + 'static> {
    failures: RateLimit<K>,
    /// Keys over their limit, with the instant they may try again (bounded, expiring).
    blocked: moka::sync::Cache<K, std::time::Instant>,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> FailureLimit<K> {
    pub fn per_minute(per_minute: u32) -> Self {
        Self {
            failures: RateLimit::per_minute(per_minute),
            blocked: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build(),
        }
    }

    /// Refused while `key` is over its failure limit.
    pub fn check(&self, key: &K) -> Result<(), Limited> {
        match self.blocked.get(key) {
            Some(until) => match until.checked_duration_since(std::time::Instant::now()) {
                Some(retry_after) if !retry_after.is_zero() => Err(Limited { retry_after }),
                _ => {
                    self.blocked.invalidate(key);
                    Ok(())
                }
            },
            None => Ok(()),
        }
    }

    /// Records a failure of `key`; it is blocked once over its limit.
    pub fn record_failure(&self, key: &K) {
        if let Err(limited) = self.failures.check(key) {
            self.blocked.insert(key.clone(), std::time::Instant::now() + limited.retry_after);
        }
    }
}

/// Every limit of the server, built from the settings.
pub struct Limits {
    pub login: RateLimit<IpAddr>,
    pub authorize: RateLimit<IpAddr>,
    pub registration: RateLimit<IpAddr>,
    pub client_auth_by_client: FailureLimit<String>,
    pub client_auth_by_addr: FailureLimit<IpAddr>,
    pub admin_auth_by_addr: FailureLimit<IpAddr>,
    /// Proxied XRPC calls per (client_id, DID).
    pub xrpc: RateLimit<(String, String)>,
}

impl Limits {
    pub fn new(settings: &RateLimits) -> Arc<Self> {
        Arc::new(Self {
            login: RateLimit::per_minute(settings.login),
            authorize: RateLimit::per_minute(settings.authorize),
            registration: RateLimit::per_minute(settings.registration),
            client_auth_by_client: FailureLimit::per_minute(settings.client_auth_failures),
            client_auth_by_addr: FailureLimit::per_minute(settings.client_auth_failures),
            admin_auth_by_addr: FailureLimit::per_minute(settings.admin_auth_failures),
            xrpc: RateLimit::per_minute(settings.xrpc),
        })
    }

    /// Drops the state of keys that are back to a full allowance (called every minute).
    pub fn forget_idle(&self) {
        self.login.forget_idle();
        self.authorize.forget_idle();
        self.registration.forget_idle();
        self.client_auth_by_client.failures.forget_idle();
        self.client_auth_by_addr.failures.forget_idle();
        self.admin_auth_by_addr.failures.forget_idle();
        self.xrpc.forget_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_refuses_after_the_burst_and_zero_is_off() {
        let limit = RateLimit::<u8>::per_minute(3);
        for _ in 0..3 {
            assert!(limit.check(&1).is_ok());
        }
        let refused = limit.check(&1).unwrap_err();
        assert!(refused.retry_after > Duration::ZERO && refused.retry_after_secs() <= 20);
        assert!(limit.check(&2).is_ok(), "other keys are not affected");
        let off = RateLimit::<u8>::per_minute(0);
        for _ in 0..1000 {
            assert!(off.check(&1).is_ok());
        }
    }

    #[test]
    fn failure_limit_counts_failures_only() {
        let limit = FailureLimit::<&'static str>::per_minute(2);
        for _ in 0..100 {
            assert!(limit.check(&"a").is_ok(), "checks alone never block");
        }
        limit.record_failure(&"a");
        limit.record_failure(&"a");
        assert!(limit.check(&"a").is_ok(), "within the limit");
        limit.record_failure(&"a");
        assert!(limit.check(&"a").is_err(), "over the limit");
        assert!(limit.check(&"b").is_ok());
    }
}
