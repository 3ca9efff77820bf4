//! Mints the HS256 JWTs every caller carries (contract: Identity).
//!
//! The load generator is its own identity provider: it holds `CHAT_JWT_SECRET` and signs one token
//! per user, valid for the whole run plus a margin, so no socket is cut off by `token_expired`
//! in the middle of a measurement.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::Serialize;

/// The contract's roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Tutor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Tutor => "tutor",
            Role::Admin => "admin",
        }
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    role: Role,
    name: &'a str,
    iat: u64,
    exp: u64,
}

/// Signs tokens with one secret and one expiry.
pub struct Minter {
    key: EncodingKey,
    header: Header,
    /// Issued-at, seconds since the epoch.
    iat: u64,
    /// Expiry, seconds since the epoch, shared by every token of the run.
    exp: u64,
}

impl Minter {
    pub fn new(secret: &[u8], now_unix: u64, valid_for_secs: u64) -> Self {
        Minter {
            key: EncodingKey::from_secret(secret),
            header: Header::new(Algorithm::HS256),
            iat: now_unix,
            exp: now_unix + valid_for_secs,
        }
    }

    pub fn mint(&self, sub: &str, role: Role, name: &str) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = Claims { sub, role, name, iat: self.iat, exp: self.exp };
        encode(&self.header, &claims, &self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    #[derive(serde::Deserialize)]
    struct Decoded {
        sub: String,
        role: String,
        name: String,
        exp: u64,
    }

    #[test]
    fn minted_tokens_verify_with_the_same_secret_and_carry_the_claims() {
        let now = 2_000_000_000;
        let token = Minter::new(b"secret", now, 600).mint("p-0-s1", Role::User, "Load Student 1").unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        let data = decode::<Decoded>(&token, &DecodingKey::from_secret(b"secret"), &validation).unwrap();
        assert_eq!(data.header.alg, Algorithm::HS256);
        assert_eq!(data.claims.sub, "p-0-s1");
        assert_eq!(data.claims.role, "user");
        assert_eq!(data.claims.name, "Load Student 1");
        assert_eq!(data.claims.exp, now + 600);
        assert!(decode::<Decoded>(&token, &DecodingKey::from_secret(b"other"), &validation).is_err());
    }
}
