//! Access tokens: JWTs signed with the server's secret (HS512), as Airflow 3 issues them from
//! `POST /auth/token`. A token names its user; the user's role is read from the database on
//! every request, so a changed role or a deleted user takes effect at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// How long a token is valid by default (Airflow's `jwt_expiration_time`: 24 hours).
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Signs and checks tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    aud: String,
}

const AUDIENCE: &str = "gust";

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid or expired token")]
pub struct BadToken;

impl TokenKeys {
    /// Keys from the server's secret.
    #[must_use]
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl,
        }
    }

    /// A token for `username`, valid from `now` for the configured time.
    pub fn issue(&self, username: &str, now: DateTime<Utc>) -> String {
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::days(1));
        let claims = Claims {
            sub: username.to_owned(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: (now + ttl).timestamp(),
            aud: AUDIENCE.to_owned(),
        };
        // Signing plain claims with an HMAC key cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// The user a valid token names.
    pub fn verify(&self, token: &str) -> Result<String, BadToken> {
        let mut validation = Validation::new(Algorithm::HS512);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims.sub)
            .map_err(|_| BadToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "jsonwebtoken checks expiry against the real clock"
    )]
    fn a_token_names_its_user_until_it_expires() {
        let keys = TokenKeys::new(b"secret", Duration::from_secs(60));
        let now = Utc::now();
        let token = keys.issue("alice", now);
        assert_eq!(keys.verify(&token).unwrap(), "alice");
        let old = keys.issue("alice", now - chrono::Duration::minutes(5));
        assert!(keys.verify(&old).is_err(), "expired");
        let other = TokenKeys::new(b"other secret", Duration::from_secs(60));
        assert!(other.verify(&token).is_err(), "signed with another secret");
        assert!(keys.verify("garbage").is_err());
    }
}
