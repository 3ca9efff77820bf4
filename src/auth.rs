//! JWT verification: the algorithm is pinned by configuration (HS256 with a secret, or RS256 /
//! ES256 with a PEM public key), never taken from the token header; `exp` is required, `nbf`,
//! `iss` and `aud` are checked, and the clock leeway is ours (5 s), not the library's 60 s.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::ServeConfig;
use crate::error::ErrorCode;
use crate::model::ids::is_valid_user_id;
use crate::model::{Role, Timestamp};

/// The authenticated user an action is taken for (from their JWT).
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub role: Role,
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
}

impl AuthError {
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Missing => ErrorCode::Unauthorized,
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::Invalid(_) => ErrorCode::InvalidToken,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// A verified token.
#[derive(Debug, Clone)]
pub struct Identity {
    pub caller: Caller,
    /// Seconds since the epoch.
    pub exp: u64,
}

/// How tokens are checked.
pub enum KeyConfig {
    Secret(Vec<u8>),
    /// A PEM public key and its algorithm (RS256 or ES256).
    PublicKey {
        pem: Vec<u8>,
        algorithm: Algorithm,
    },
}

pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    /// Only with a shared secret: lets `--demo` issue development tokens.
    signer: Option<EncodingKey>,
}

impl Verifier {
    pub fn new(key: KeyConfig, leeway_secs: u64, issuer: Option<&str>, audience: Option<&str>) -> Result<Self, String> {
        let (key, algorithm, signer) = match key {
            KeyConfig::Secret(secret) => {
                (DecodingKey::from_secret(&secret), Algorithm::HS256, Some(EncodingKey::from_secret(&secret)))
            }
            KeyConfig::PublicKey { pem, algorithm } => {
                let key = match algorithm {
                    Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
                    Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
                    other => return Err(format!("unsupported JWT algorithm {other:?}")),
                }
                .map_err(|e| format!("CHAT_JWT_PUBLIC_KEY is not a usable PEM key: {e}"))?;
                (key, algorithm, None)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        required.extend(issuer.map(|_| "iss"));
        required.extend(audience.map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        match issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        match audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        Ok(Verifier { key, validation, signer })
    }

    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid(e.to_string()),
        })?;
        let claims = data.claims;
        if !is_valid_user_id(&claims.sub) {
            return Err(AuthError::Invalid("sub must be 1..64 chars of [A-Za-z0-9_-]".into()));
        }
        let name = claims.name.filter(|n| !n.trim().is_empty() && n.chars().count() <= 200);
        Ok(Identity { caller: Caller { user_id: claims.sub, role: claims.role, name }, exp: claims.exp })
    }

    /// The verifier the configuration asks for: a PEM public key (inline or a path) with RS256 or
    /// ES256, else the HS256 secret, else (with `--demo`) the demo secret.
    pub fn from_config(config: &ServeConfig, demo_secret: Option<&[u8]>) -> Result<Verifier, String> {
        let key = if let Some(pem) = &config.jwt_public_key {
            let pem = if pem.trim_start().starts_with("-----BEGIN") {
                pem.clone().into_bytes()
            } else {
                std::fs::read(pem).map_err(|e| format!("CHAT_JWT_PUBLIC_KEY: {pem}: {e}"))?
            };
            let algorithm = match config.jwt_algorithm.to_ascii_uppercase().as_str() {
                "RS256" => Algorithm::RS256,
                "ES256" => Algorithm::ES256,
                other => {
                    return Err(format!("CHAT_JWT_ALGORITHM must be RS256 or ES256 with a public key, not {other}"))
                }
            };
            KeyConfig::PublicKey { pem, algorithm }
        } else if let Some(secret) = config.jwt_secret.as_ref().filter(|s| !s.is_empty()) {
            KeyConfig::Secret(secret.clone().into_bytes())
        } else if let Some(secret) = demo_secret {
            KeyConfig::Secret(secret.to_vec())
        } else {
            return Err("set CHAT_JWT_SECRET (or CHAT_JWT_PUBLIC_KEY), or run with --demo".into());
        };
        Verifier::new(key, config.jwt_leeway, config.jwt_issuer.as_deref(), config.jwt_audience.as_deref())
    }

    /// Issues a token (development mode only: needs the shared secret).
    pub fn issue(&self, user_id: &str, role: Role, name: Option<&str>, ttl_secs: u64) -> Option<(String, u64)> {
        let signer = self.signer.as_ref()?;
        let now = (Timestamp::now().millis() / 1000) as u64;
        let claims = Claims {
            sub: user_id.to_owned(),
            role,
            exp: now + ttl_secs,
            name: name.map(str::to_owned),
            iat: Some(now),
            nbf: None,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, signer).ok()?;
        Some((token, claims.exp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> Verifier {
        Verifier::new(KeyConfig::Secret(b"s3cret".to_vec()), 5, None, None).unwrap()
    }

    fn token(secret: &[u8], claims: serde_json::Value, alg: Algorithm) -> String {
        jsonwebtoken::encode(&Header::new(alg), &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn now() -> u64 {
        (Timestamp::now().millis() / 1000) as u64
    }

    #[test]
    fn accepts_a_valid_token_and_reads_its_claims() {
        let t = token(
            b"s3cret",
            serde_json::json!({"sub":"u1","role":"tutor","exp":now()+60,"name":"Ann"}),
            Algorithm::HS256,
        );
        let id = verifier().verify(&t).unwrap();
        assert_eq!(id.caller.user_id, "u1");
        assert_eq!(id.caller.role, Role::Tutor);
        assert_eq!(id.caller.name.as_deref(), Some("Ann"));
    }

    #[test]
    fn expiry_uses_a_five_second_leeway() {
        let v = verifier();
        let recent = token(b"s3cret", serde_json::json!({"sub":"u1","role":"user","exp":now()-2}), Algorithm::HS256);
        assert!(v.verify(&recent).is_ok());
        let old = token(b"s3cret", serde_json::json!({"sub":"u1","role":"user","exp":now()-30}), Algorithm::HS256);
        assert_eq!(v.verify(&old).unwrap_err().code(), ErrorCode::TokenExpired);
    }

    #[test]
    fn rejects_wrong_secret_algorithm_missing_exp_and_bad_sub() {
        let v = verifier();
        let wrong = token(b"other", serde_json::json!({"sub":"u1","role":"user","exp":now()+60}), Algorithm::HS256);
        assert_eq!(v.verify(&wrong).unwrap_err().code(), ErrorCode::InvalidToken);
        let hs512 = token(b"s3cret", serde_json::json!({"sub":"u1","role":"user","exp":now()+60}), Algorithm::HS512);
        assert_eq!(v.verify(&hs512).unwrap_err().code(), ErrorCode::InvalidToken);
        let no_exp = token(b"s3cret", serde_json::json!({"sub":"u1","role":"user"}), Algorithm::HS256);
        assert_eq!(v.verify(&no_exp).unwrap_err().code(), ErrorCode::InvalidToken);
        let bad_sub = token(b"s3cret", serde_json::json!({"sub":"a b","role":"user","exp":now()+60}), Algorithm::HS256);
        assert_eq!(v.verify(&bad_sub).unwrap_err().code(), ErrorCode::InvalidToken);
        let bad_role = token(b"s3cret", serde_json::json!({"sub":"u1","role":"root","exp":now()+60}), Algorithm::HS256);
        assert_eq!(v.verify(&bad_role).unwrap_err().code(), ErrorCode::InvalidToken);
        let future = token(
            b"s3cret",
            serde_json::json!({"sub":"u1","role":"user","exp":now()+600,"nbf":now()+300}),
            Algorithm::HS256,
        );
        assert_eq!(v.verify(&future).unwrap_err().code(), ErrorCode::InvalidToken);
        assert_eq!(v.verify("garbage").unwrap_err().code(), ErrorCode::InvalidToken);
    }

    #[test]
    fn checks_issuer_and_audience_when_configured() {
        let v = Verifier::new(KeyConfig::Secret(b"s3cret".to_vec()), 5, Some("platform"), Some("chat")).unwrap();
        let good = token(
            b"s3cret",
            serde_json::json!({"sub":"u","role":"user","exp":now()+60,"iss":"platform","aud":"chat"}),
            Algorithm::HS256,
        );
        assert!(v.verify(&good).is_ok());
        let bad = token(
            b"s3cret",
            serde_json::json!({"sub":"u","role":"user","exp":now()+60,"iss":"x","aud":"chat"}),
            Algorithm::HS256,
        );
        assert!(v.verify(&bad).is_err());
        let no_aud = token(
            b"s3cret",
            serde_json::json!({"sub":"u","role":"user","exp":now()+60,"iss":"platform"}),
            Algorithm::HS256,
        );
        assert!(v.verify(&no_aud).is_err());
    }

    /// A throwaway P-256 key pair, made for this test only.
    const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgegR977w+aXBHbqwd\nm5S6UvmITFSUeMmFeSgUQNu0lLqhRANCAAQ4mlWcXr30ut7t/7tGoquTdHYpQwRv\ngfIjtitYrcHJPnFbX1NxX4yweYPyJdw8AxVtDdswsgWjfnCTMOAi4zZb\n-----END PRIVATE KEY-----";
    const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEOJpVnF699Lre7f+7RqKrk3R2KUME\nb4HyI7YrWK3ByT5xW19TcV+MsHmD8iXcPAMVbQ3bMLIFo35wkzDgIuM2Ww==\n-----END PUBLIC KEY-----";

    #[test]
    fn es256_tokens_verify_against_the_public_key_and_hs256_ones_do_not() {
        let pem = EC_PUBLIC.as_bytes().to_vec();
        let v = Verifier::new(KeyConfig::PublicKey { pem, algorithm: Algorithm::ES256 }, 5, None, None).unwrap();
        let claims = serde_json::json!({"sub":"u1","role":"user","exp":now()+60});
        let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
        let es = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &key).unwrap();
        assert_eq!(v.verify(&es).unwrap().caller.user_id, "u1");
        // The algorithm is pinned: an HS256 token (say, signed with the public key as a secret) fails.
        let hs = token(EC_PUBLIC.as_bytes(), claims, Algorithm::HS256);
        assert_eq!(v.verify(&hs).unwrap_err().code(), ErrorCode::InvalidToken);
        assert!(v.issue("u1", Role::User, None, 60).is_none(), "no signing key without a secret");
    }
}
