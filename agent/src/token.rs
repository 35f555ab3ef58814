//! Rotating QR tokens: bound to one device and one time window, signed with HMAC-SHA256.
//!
//! Form: `{device}.{window}.{mac}` where `window = unix_seconds / rotation` and `mac` is the
//! first 16 bytes of HMAC-SHA256(secret, "caidan-qr-v1|{device}|{window}") in base64url.
//! The device id is carried in clear so a token from another screen is told apart from a
//! forgery. A token is accepted in its own window and the one after it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secrets::HmacKey;

const MAC_LEN: usize = 16;
/// Longest token we bother to parse; anything longer is garbled by definition.
const MAX_TOKEN_LEN: usize = 200;

/// Why a QR token was refused. Each maps to a 4xx answer with this reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is garbled: expected device.window.signature")]
    Garbled,
    #[error("token was issued for another device")]
    OtherDevice,
    #[error("token signature does not match: forged or altered")]
    Forged,
    #[error("token has expired: scan the code on the screen again")]
    Stale,
    #[error("token is from a future time window: device clock mismatch")]
    NotYetValid,
}

impl TokenError {
    /// Short stable label, used in metrics and JSON errors.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Garbled => "token_garbled",
            TokenError::OtherDevice => "token_other_device",
            TokenError::Forged => "token_forged",
            TokenError::Stale => "token_stale",
            TokenError::NotYetValid => "token_not_yet_valid",
        }
    }
}

/// Issues and checks the tokens of one device.
#[derive(Clone)]
pub struct TokenSigner {
    device: String,
    secret: HmacKey,
    /// Shared by clones, so a config push changes it for every route at once.
    rotation_secs: Arc<AtomicU32>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("device", &self.device)
            .field("rotation_secs", &self.rotation_secs())
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// `rotation_secs` must be at least 1 (config validation guarantees it).
    pub fn new(device: impl Into<String>, secret: HmacKey, rotation_secs: u32) -> Self {
        Self {
            device: device.into(),
            secret,
            rotation_secs: Arc::new(AtomicU32::new(rotation_secs.max(1))),
        }
    }

    pub fn rotation_secs(&self) -> u32 {
        self.rotation_secs.load(Ordering::Relaxed).max(1)
    }

    /// A new rotation period from config (at least 1 second); tokens of the old period stop
    /// verifying, and the screen shows a new one at its next refresh.
    pub fn set_rotation_secs(&self, secs: u32) {
        self.rotation_secs.store(secs.max(1), Ordering::Relaxed);
    }

    /// The window a wall-clock instant falls in.
    pub fn window_at(&self, now_ms: i64) -> i64 {
        now_ms
            .div_euclid(1000)
            .div_euclid(i64::from(self.rotation_secs()))
    }

    /// Milliseconds until the token issued at `now_ms` is replaced on screen.
    pub fn ms_until_rotation(&self, now_ms: i64) -> i64 {
        let period = i64::from(self.rotation_secs()) * 1000;
        period - now_ms.rem_euclid(period)
    }

    /// The token to show on screen at `now_ms`.
    pub fn issue(&self, now_ms: i64) -> String {
        let window = self.window_at(now_ms);
        let mac = self.mac(&self.device, window);
        format!("{}.{}.{}", self.device, window, URL_SAFE_NO_PAD.encode(mac))
    }

    /// Checks a scanned token; returns its window when accepted.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<i64, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Garbled);
        }
        let mut parts = token.split('.');
        let (Some(device), Some(window), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Garbled);
        };
        let window: i64 = window.parse().map_err(|_| TokenError::Garbled)?;
        let mac = URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| TokenError::Garbled)?;
        if mac.len() != MAC_LEN || device.is_empty() {
            return Err(TokenError::Garbled);
        }
        if device != self.device {
            return Err(TokenError::OtherDevice);
        }
        let mut check = self.hmac();
        check.update(&Self::message(device, window));
        // verify_truncated_left compares in constant time.
        check
            .verify_truncated_left(&mac)
            .map_err(|_| TokenError::Forged)?;
        let current = self.window_at(now_ms);
        if window > current {
            return Err(TokenError::NotYetValid);
        }
        if window < current - 1 {
            return Err(TokenError::Stale);
        }
        Ok(window)
    }

    fn hmac(&self) -> Hmac<Sha256> {
        self.secret.mac()
    }

    fn message(device: &str, window: i64) -> Vec<u8> {
        format!("caidan-qr-v1|{device}|{window}").into_bytes()
    }

    fn mac(&self, device: &str, window: i64) -> [u8; MAC_LEN] {
        let mut h = self.hmac();
        h.update(&Self::message(device, window));
        let full = h.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_790_000_000_000;

    fn signer() -> TokenSigner {
        TokenSigner::new(
            "cinema-01",
            HmacKey::from_bytes(b"0123456789abcdef0123456789abcdef"),
            30,
        )
    }

    #[test]
    fn accepts_current_and_previous_window_only() {
        let s = signer();
        let t = s.issue(T0);
        assert!(s.verify(&t, T0).is_ok());
        assert!(
            s.verify(&t, T0 + 30_000).is_ok(),
            "previous window still accepted"
        );
        assert_eq!(s.verify(&t, T0 + 60_000), Err(TokenError::Stale));
        assert_eq!(s.verify(&t, T0 - 30_000), Err(TokenError::NotYetValid));
    }

    #[test]
    fn rejects_other_device_forged_and_garbled() {
        let s = signer();
        let other = TokenSigner::new(
            "cinema-02",
            HmacKey::from_bytes(b"0123456789abcdef0123456789abcdef"),
            30,
        );
        assert_eq!(s.verify(&other.issue(T0), T0), Err(TokenError::OtherDevice));

        let wrong_key = TokenSigner::new(
            "cinema-01",
            HmacKey::from_bytes(b"another-secret-another-secret-xx"),
            30,
        );
        assert_eq!(s.verify(&wrong_key.issue(T0), T0), Err(TokenError::Forged));

        // A valid signature moved to another window is a forgery.
        let t = s.issue(T0);
        let mut parts: Vec<&str> = t.split('.').collect();
        let w: i64 = parts[1].parse().unwrap();
        let moved = (w + 1).to_string();
        parts[1] = &moved;
        assert_eq!(
            s.verify(&parts.join("."), T0 + 30_000),
            Err(TokenError::Forged)
        );

        for bad in [
            "",
            "a.b",
            "cinema-01.x.AAAA",
            "cinema-01.1.%%%",
            "a.b.c.d",
            &"x".repeat(500),
        ] {
            assert_eq!(s.verify(bad, T0), Err(TokenError::Garbled), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn random_strings_never_verify(s in "\\PC{0,80}") {
            proptest::prop_assert!(signer().verify(&s, T0).is_err());
        }
    }
}
