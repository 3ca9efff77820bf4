//! Identity (CONTRACT "Identity"): HS256 JWTs with the secret from `CHAT_JWT_SECRET`. The
//! algorithm is pinned here, never taken from the token header; `exp` and `sub` are required;
//! the clock leeway is 5 s as in coursechat, not jsonwebtoken's 60 s default.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ChatError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Tutor,
    Admin,
}

/// The authenticated user an action is taken for, from its token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub role: Role,
    /// The token's `name`, which updates the user's record.
    pub name: Option<String>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    exp: u64,
    #[serde(default)]
    name: Option<String>,
}

pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    /// Clock leeway, seconds; also what a live socket is given past its token's `exp`.
    pub leeway: u64,
}

impl Verifier {
    pub fn new(secret: &[u8], leeway: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = leeway;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Verifier { key: DecodingKey::from_secret(secret), validation, leeway }
    }

    pub fn verify(&self, token: &str) -> Result<Caller, ChatError> {
        if token.is_empty() {
            return Err(ChatError::Unauthorized);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => ChatError::TokenExpired,
                _ => ChatError::InvalidToken(e.to_string()),
            })?
            .claims;
        if !is_valid_id(&claims.sub) {
            return Err(ChatError::InvalidToken("sub must be 1..64 chars of [A-Za-z0-9_-]".into()));
        }
        let name = claims.name.filter(|n| !n.trim().is_empty() && n.chars().count() <= 200);
        Ok(Caller { user_id: claims.sub, role: claims.role, name, exp: claims.exp })
    }
}

/// User, course and tutor ids: 1..64 chars of `[A-Za-z0-9_-]`.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
