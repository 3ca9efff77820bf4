//! Attachments: what an upload may be, how its type is read from its bytes, and the signed,
//! expiring urls that let an `<img src>` fetch one without headers.
//!
//! The type is sniffed from the bytes (magic numbers, via `infer`), never taken from the
//! request's `Content-Type` or file name: a PNG named `.pdf` is a PNG, an executable labelled
//! `image/png` is refused. Plain text has no magic number; bytes that are valid UTF-8 without NUL
//! or other binary control characters count as `text/plain`.
//!
//! A url is `/api/attachments/<id>?exp=<unix seconds>&sig=<hex>`, the signature an HMAC-SHA256
//! over `<id>.<exp>` with `CHAT_SIGNING_KEY` (the same on every node). Urls are signed when a
//! message is shown (history, missed, acks, live delivery), so each carries a fresh expiry.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::ServeConfig;
use crate::model::{Message, Timestamp};

/// The contract's default allowlist.
pub const DEFAULT_TYPES: [&str; 6] =
    ["image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"];

/// The type of `bytes` as read from the bytes themselves, if any can be told.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if let Some(kind) = infer::get(bytes) {
        return Some(kind.mime_type());
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let binary = text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}'));
    (!binary && !bytes.is_empty()).then_some("text/plain")
}

/// Whether a message of this type shows inline (images) rather than as a download.
pub fn is_image(mime: &str) -> bool {
    mime.starts_with("image/")
}

/// Signs and checks attachment urls.
pub struct UrlSigner {
    key: Vec<u8>,
    ttl_secs: u64,
}

type HmacSha256 = Hmac<Sha256>;

impl UrlSigner {
    pub fn new(key: &[u8], ttl_secs: u64) -> Self {
        UrlSigner { key: key.to_vec(), ttl_secs }
    }

    /// The attachment url signer: `CHAT_SIGNING_KEY`, else a key derived from the JWT secret (the demo
    /// secret with `--demo`), else (only a public key) a random key for this process.
    pub fn from_config(config: &ServeConfig, demo_secret: Option<&[u8]>) -> UrlSigner {
        let ttl = config.limits.attachment_url_ttl;
        if let Some(key) = config.signing_key.as_ref().filter(|k| !k.is_empty()) {
            return UrlSigner::new(key.as_bytes(), ttl);
        }
        let secret = match (config.jwt_secret.as_ref().filter(|s| !s.is_empty()), demo_secret) {
            (Some(s), _) => s.clone().into_bytes(),
            (None, Some(demo)) => demo.to_vec(),
            (None, None) => {
                // Only a public key: nothing shared to derive from. A random key works on this node
                // until it restarts; several nodes need CHAT_SIGNING_KEY.
                tracing::warn!("CHAT_SIGNING_KEY is unset: attachment urls are signed with a random key valid on this node until it restarts");
                (0..4).map(|_| format!("{:016x}", rand::random::<u64>())).collect::<String>().into_bytes()
            }
        };
        UrlSigner::new(&UrlSigner::derive_key(&secret), ttl)
    }

    /// A message as a client sees it: its attachment carries a freshly signed url.
    pub fn present(&self, message: &mut Message) {
        if let Some(a) = message.attachment.as_mut() {
            a.url = self.url(&a.id);
        }
    }

    /// A signing key derived from the JWT secret, for when `CHAT_SIGNING_KEY` is unset.
    pub fn derive_key(secret: &[u8]) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(b"coursechat attachment urls\0");
        h.update(secret);
        h.finalize().to_vec()
    }

    fn signature(&self, id: &str, exp: u64) -> String {
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.key) else { return String::new() };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(exp.to_string().as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A fresh url for attachment `id`, valid for the configured time from now.
    pub fn url(&self, id: &str) -> String {
        let exp = (Timestamp::now().millis() / 1000) as u64 + self.ttl_secs;
        format!("/api/attachments/{id}?exp={exp}&sig={}", self.signature(id, exp))
    }

    /// Whether `sig` signs `id` until `exp`, and `exp` has not passed.
    pub fn verify(&self, id: &str, exp: u64, sig: &str) -> bool {
        let now = (Timestamp::now().millis() / 1000) as u64;
        if exp < now {
            return false;
        }
        let expected = self.signature(id, exp);
        // Constant time: compare every byte.
        expected.len() == sig.len() && expected.bytes().zip(sig.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, b'I', b'H', b'D', b'R'];

    #[test]
    fn types_come_from_the_bytes() {
        assert_eq!(sniff(PNG), Some("image/png"));
        assert_eq!(sniff(b"%PDF-1.7\n%..."), Some("application/pdf"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F']), Some("image/jpeg"));
        assert_eq!(sniff(b"hello\nworld\t!"), Some("text/plain"));
        // Executables are never one of the allowed types, whatever they are labelled.
        let elf = [0x7F, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0x3E, 0];
        let exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00";
        for bytes in [&elf[..], &exe[..]] {
            assert!(sniff(bytes).is_none_or(|m| !DEFAULT_TYPES.contains(&m)), "{:?}", sniff(bytes));
        }
        assert_eq!(sniff(&[0, 1, 2, 3]), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn urls_verify_until_they_expire_and_not_when_tampered() {
        let signer = UrlSigner::new(b"key", 60);
        let url = signer.url("abc");
        let query = url.split_once('?').unwrap().1;
        let exp: u64 = query.split('&').next().unwrap()["exp=".len()..].parse().unwrap();
        let sig = &query[query.find("sig=").unwrap() + 4..];
        assert!(signer.verify("abc", exp, sig));
        assert!(!signer.verify("abd", exp, sig), "another attachment");
        assert!(!signer.verify("abc", exp + 1, sig), "another expiry");
        assert!(!UrlSigner::new(b"other", 60).verify("abc", exp, sig), "another key");
        let past = (Timestamp::now().millis() / 1000) as u64 - 1;
        assert!(!signer.verify("abc", past, &signer.signature("abc", past)), "expired");
    }
}
