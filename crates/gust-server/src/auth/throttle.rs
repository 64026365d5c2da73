//! Login throttling: every sign-in attempt (`POST /auth/token`, `/auth/token/cli`, `/login`)
//! spends one token from its client address's bucket and one from its user name's, each refilled
//! at a configured rate per minute (GCRA, the `governor` crate). An empty bucket refuses the
//! attempt before its password is checked, with how long to wait.
//!
//! The state must stay small under a flood of made-up user names or spoofed addresses, so keys
//! are not kept as given: each is hashed (with a per-process random key, so nobody can aim at a
//! bucket) into one of [`BUCKETS`] buckets per limiter. Memory is bounded by that number
//! whatever is sent; two names sharing a bucket share its budget, which can only make the limit
//! stricter, never lift it.

use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How many buckets each limiter hashes its keys into: the most entries its state can hold.
pub const BUCKETS: u32 = 1 << 16;

/// The login rate limits (`[api] auth_rate_limit_per_user` and
/// `auth_rate_limit_per_address`): attempts per minute, 0 for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Attempts per minute for one user name, whatever address they come from (default 10).
    pub per_user: u32,
    /// Attempts per minute from one client address, whatever names they try (default 20).
    pub per_address: u32,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        Self {
            per_user: 10,
            per_address: 20,
        }
    }
}

/// An attempt refused for coming too fast: try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many sign-in attempts; try again in {} seconds", self.retry_after_secs())]
pub struct Throttled {
    /// How long until the next attempt would be accepted.
    pub retry_after: Duration,
}

impl Throttled {
    /// Whole seconds to wait (at least 1), as `Retry-After` says it.
    #[must_use]
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }
}

/// One keyed limiter over hashed buckets.
struct Limiter {
    buckets: DefaultKeyedRateLimiter<u32>,
    hasher: std::collections::hash_map::RandomState,
}

impl Limiter {
    fn new(per_minute: u32) -> Option<Self> {
        let per_minute = NonZeroU32::new(per_minute)?;
        Some(Self {
            buckets: RateLimiter::keyed(Quota::per_minute(per_minute)),
            hasher: std::collections::hash_map::RandomState::new(),
        })
    }

    fn check(&self, key: impl Hash) -> Result<(), Throttled> {
        let bucket = (self.hasher.hash_one(key) % u64::from(BUCKETS)) as u32;
        self.buckets
            .check_key(&bucket)
            .map_err(|not_until| Throttled {
                retry_after: not_until.wait_time_from(self.buckets.clock().now()),
            })
    }
}

/// The login throttle a server shares between its login endpoints.
pub struct LoginThrottle {
    per_user: Option<Limiter>,
    per_address: Option<Limiter>,
}

impl std::fmt::Debug for LoginThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginThrottle")
            .field("per_user", &self.per_user.is_some())
            .field("per_address", &self.per_address.is_some())
            .finish()
    }
}

impl LoginThrottle {
    /// A throttle with `settings`' limits.
    #[must_use]
    pub fn new(settings: ThrottleSettings) -> Self {
        Self {
            per_user: Limiter::new(settings.per_user),
            per_address: Limiter::new(settings.per_address),
        }
    }

    /// Spends one attempt for `username` from `address`: the address's budget first, so a
    /// flood of names from one address is stopped before it touches the names' budgets. An
    /// unknown address (a request that did not come over a socket, which only in-process
    /// callers send) spends the name's budget alone.
    pub fn attempt(&self, address: Option<IpAddr>, username: &str) -> Result<(), Throttled> {
        if let (Some(limiter), Some(address)) = (&self.per_address, address) {
            limiter.check(address_key(address))?;
        }
        if let Some(limiter) = &self.per_user {
            limiter.check(username)?;
        }
        Ok(())
    }

    /// How many buckets hold state now (at most [`BUCKETS`] per limiter).
    #[must_use]
    pub fn tracked(&self) -> usize {
        [&self.per_user, &self.per_address]
            .into_iter()
            .flatten()
            .map(|l| l.buckets.len())
            .sum()
    }
}

/// The part of an address that names one client: an IPv4 address, or an IPv6 address's /64
/// (one host or home usually holds a whole /64, so its addresses would otherwise be endless).
fn address_key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_user_name_gets_its_burst_then_waits() {
        let throttle = LoginThrottle::new(ThrottleSettings {
            per_user: 5,
            per_address: 0,
        });
        for i in 0..5 {
            // Each attempt from another address: the name's own budget stops them.
            throttle
                .attempt(ip(&format!("10.0.0.{i}")), "alice")
                .unwrap();
        }
        let refused = throttle.attempt(ip("10.0.0.9"), "alice").unwrap_err();
        assert!(
            refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(12)
        );
        assert!((1..=12).contains(&refused.retry_after_secs()));
        throttle.attempt(ip("10.0.0.9"), "bob").unwrap();
    }

    #[test]
    fn an_address_gets_its_burst_whatever_names_it_tries() {
        let throttle = LoginThrottle::new(ThrottleSettings {
            per_user: 0,
            per_address: 3,
        });
        for name in ["a", "b", "c"] {
            throttle.attempt(ip("192.0.2.1"), name).unwrap();
        }
        assert!(throttle.attempt(ip("192.0.2.1"), "d").is_err());
        throttle.attempt(ip("192.0.2.2"), "d").unwrap();
        // The addresses of one IPv6 /64 are one client.
        for i in 0..3 {
            throttle
                .attempt(ip(&format!("2001:db8::{i}")), "e")
                .unwrap();
        }
        assert!(throttle.attempt(ip("2001:db8::ffff"), "e").is_err());
        throttle.attempt(ip("2001:db8:0:1::1"), "e").unwrap();
    }

    #[test]
    fn a_flood_of_names_and_addresses_keeps_the_state_bounded() {
        let throttle = LoginThrottle::new(ThrottleSettings::default());
        for i in 0..300_000u32 {
            let address = IpAddr::from(i.to_be_bytes());
            let _ = throttle.attempt(Some(address), &format!("user-{i}"));
        }
        assert!(
            throttle.tracked() <= 2 * BUCKETS as usize,
            "{} buckets tracked",
            throttle.tracked()
        );
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let throttle = LoginThrottle::new(ThrottleSettings {
            per_user: 0,
            per_address: 0,
        });
        for _ in 0..100 {
            throttle.attempt(None, "alice").unwrap();
        }
        assert_eq!(throttle.tracked(), 0);
    }
}
