//! Access tokens: JWTs signed with the server's secret (HS512), as Airflow 3 issues them from
//! `POST /auth/token`. A token names its user and the user's account id (never reused), so a
//! deleted user's token does not work for a later account of the same name; the user's role is
//! read from the database on every request, so a changed role or a deleted user takes effect at
//! once.

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
    /// The account's id ([`gust_store::User::id`]).
    uid: String,
    iat: i64,
    nbf: i64,
    exp: i64,
    aud: String,
}

const AUDIENCE: &str = "gust";

/// Whom a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSubject {
    /// The user's name.
    pub username: String,
    /// The id of the account the token was issued to.
    pub user_id: String,
}

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

    /// A token for the account `user_id` named `username`, valid from `now` for the configured
    /// time.
    pub fn issue(&self, username: &str, user_id: &str, now: DateTime<Utc>) -> String {
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::days(1));
        let claims = Claims {
            sub: username.to_owned(),
            uid: user_id.to_owned(),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: (now + ttl).timestamp(),
            aud: AUDIENCE.to_owned(),
        };
        // Signing plain claims with an HMAC key cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &self.encoding)
            .unwrap_or_default()
    }

    /// The user a valid token names: signed with our secret, for our audience, and between
    /// its `nbf` and `exp` (with a few seconds' leeway for clocks that differ).
    pub fn verify(&self, token: &str) -> Result<TokenSubject, BadToken> {
        let mut validation = Validation::new(Algorithm::HS512);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| TokenSubject {
                username: data.claims.sub,
                user_id: data.claims.uid,
            })
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
        let token = keys.issue("alice", "id-1", now);
        assert_eq!(
            keys.verify(&token).unwrap(),
            TokenSubject {
                username: "alice".into(),
                user_id: "id-1".into()
            }
        );
        let old = keys.issue("alice", "id-1", now - chrono::Duration::minutes(5));
        assert!(keys.verify(&old).is_err(), "expired");
        let other = TokenKeys::new(b"other secret", Duration::from_secs(60));
        assert!(other.verify(&token).is_err(), "signed with another secret");
        assert!(keys.verify("garbage").is_err());
    }

    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "jsonwebtoken checks nbf against the real clock"
    )]
    fn a_token_is_refused_before_its_not_before_time() {
        let keys = TokenKeys::new(b"secret", Duration::from_secs(3600));
        let future = keys.issue("alice", "id-1", Utc::now() + chrono::Duration::minutes(10));
        assert!(keys.verify(&future).is_err());
    }

    #[test]
    fn a_token_without_an_account_id_is_refused() {
        // Tokens issued before accounts had ids named the user only.
        #[derive(Serialize)]
        struct OldClaims {
            sub: &'static str,
            iat: i64,
            nbf: i64,
            exp: i64,
            aud: &'static str,
        }
        #[allow(clippy::disallowed_methods, reason = "the token must be current")]
        let now = Utc::now().timestamp();
        let old = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &OldClaims {
                sub: "alice",
                iat: now,
                nbf: now,
                exp: now + 60,
                aud: AUDIENCE,
            },
            &EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        let keys = TokenKeys::new(b"secret", Duration::from_secs(60));
        assert!(keys.verify(&old).is_err());
    }
}
