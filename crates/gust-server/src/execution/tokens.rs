//! The tokens Python tasks' workers present: JWTs signed with the server's secret (HS512), as
//! Airflow's execution tokens are, for the audience `gust-execution` (so a task's token is never
//! a user's, nor the reverse), naming one try (`sub`, its task instance id) with the scope
//! `execution`. They are short-lived; a worker whose token is past half its life gets a fresh
//! one in the `Refreshed-API-Token` header of its next answer, as Airflow's API server does.

use std::time::Duration;

use chrono::{DateTime, Utc};
use gust_executor::execution::{TokenGrant, TryTokens};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long a task token is valid: Airflow's `[execution_api] jwt_expiration_time` (10 minutes).
pub const TASK_TOKEN_TTL: Duration = Duration::from_secs(600);

const AUDIENCE: &str = "gust-execution";
const SCOPE: &str = "execution";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    scope: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    aud: String,
}

/// Signs and checks task tokens.
#[derive(Clone)]
pub struct TaskTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for TaskTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskTokens")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl TaskTokens {
    /// Tokens signed with `secret` (the server's), valid for `ttl`.
    #[must_use]
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl,
        }
    }

    /// How long a token is valid.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl TryTokens for TaskTokens {
    fn issue(&self, ti_id: Uuid, now: DateTime<Utc>) -> String {
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::minutes(10));
        let claims = Claims {
            sub: ti_id.to_string(),
            scope: SCOPE.to_owned(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: (now + ttl).timestamp(),
            aud: AUDIENCE.to_owned(),
        };
        // Signing plain claims with an HMAC key cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// Checked against `now` (the injected clock), with a few seconds' leeway for clocks that
    /// differ.
    fn verify(&self, token: &str, now: DateTime<Utc>) -> Option<TokenGrant> {
        const LEEWAY: i64 = 5;
        let mut validation = Validation::new(Algorithm::HS512);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "sub"]);
        // Times are checked below against the clock Gust runs on.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        let t = now.timestamp();
        if claims.scope != SCOPE || t + LEEWAY < claims.nbf || t - LEEWAY >= claims.exp {
            return None;
        }
        Some(TokenGrant {
            ti_id: claims.sub.parse().ok()?,
            expires_at: DateTime::from_timestamp(claims.exp, 0)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_try_until_it_expires() {
        let tokens = TaskTokens::new(b"secret", Duration::from_secs(600));
        let now = DateTime::from_timestamp(1_800_000_000, 0).expect("a time");
        let id = Uuid::new_v4();
        let token = tokens.issue(id, now);
        assert_eq!(tokens.verify(&token, now).map(|g| g.ti_id), Some(id));
        let later = now + chrono::Duration::minutes(11);
        assert_eq!(tokens.verify(&token, later), None, "expired");
        let other = TaskTokens::new(b"other", Duration::from_secs(600));
        assert_eq!(other.verify(&token, now), None, "another secret");
        let user = crate::auth::token::TokenKeys::new(b"secret", Duration::from_secs(600));
        let current = tokens.issue(
            id,
            gust_core::clock::Clock::now(&gust_core::clock::SystemClock),
        );
        assert!(
            user.verify(&current).is_err(),
            "a task token is not a user's token"
        );
        assert_eq!(tokens.verify("garbage", now), None);
    }
}
