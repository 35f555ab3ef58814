//! Who may use the staff routes, and how wrong codes are locked out.
//!
//! Staff present their token as `Authorization: Bearer`, or sign in once on the staff
//! console and then carry an HttpOnly, SameSite=Strict session cookie: the token's hash and
//! an expiry, MACed with a key derived from the fleet secret. Removing a token from config
//! ends its sessions. Wrong codes (claim or pickup) count per staff token and for the whole
//! touchpoint; at the vending keypad, which needs no token, per client address and for the
//! keypad as a whole.

use std::net::IpAddr;

use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use caidan_sync::credentials::TokenHash;
use hmac::Mac;
use subtle::ConstantTimeEq;

use super::{ApiError, AppState};
use crate::lockout::{Locked, LockoutPolicy, Lockouts};
use crate::secrets::HmacKey;

/// Name of the staff console's session cookie.
pub const SESSION_COOKIE: &str = "caidan_staff";
/// How long a console sign-in lasts.
pub const SESSION_MS: i64 = 12 * 3_600_000;

/// Signs and checks staff console sessions.
#[derive(Clone)]
pub struct StaffSessions {
    key: HmacKey,
}

impl std::fmt::Debug for StaffSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaffSessions(..)")
    }
}

impl StaffSessions {
    /// Keyed by the fleet secret, so sessions survive a restart of the agent.
    pub fn new(fleet_secret: &HmacKey) -> Self {
        let mut mac = fleet_secret.mac();
        mac.update(b"caidan-staff-session-v1");
        StaffSessions {
            key: HmacKey::from_bytes(&mac.finalize().into_bytes()),
        }
    }

    fn mac(&self, body: &str) -> [u8; 32] {
        let mut mac = self.key.mac();
        mac.update(body.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A session value for `staff`, valid until `now_ms + SESSION_MS`.
    pub fn issue(&self, staff: &TokenHash, now_ms: i64) -> String {
        let body = format!("{staff}.{}", now_ms + SESSION_MS);
        let sig = URL_SAFE_NO_PAD.encode(self.mac(&body));
        format!("{body}.{sig}")
    }

    /// The staff token hash of a valid, unexpired session.
    pub fn verify(&self, value: &str, now_ms: i64) -> Option<TokenHash> {
        let (body, sig) = value.rsplit_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        if !bool::from(self.mac(body).as_slice().ct_eq(&sig)) {
            return None;
        }
        let (hash, until) = body.rsplit_once('.')?;
        let until: i64 = until.parse().ok()?;
        (now_ms < until).then_some(())?;
        hash.parse().ok()
    }
}

/// The value of cookie `name`, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The staff member behind a request: a bearer staff token, or a console session.
pub fn staff(state: &AppState, headers: &HeaderMap) -> Result<TokenHash, ApiError> {
    let refused = |message: &str| {
        state.metrics.rejection("staff_unauthorized");
        ApiError::new(StatusCode::UNAUTHORIZED, "staff_unauthorized", message)
    };
    let bearer =
        caidan_sync::credentials::bearer(headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()));
    if let Some(token) = bearer {
        return state
            .live()
            .staff
            .accepts(token)
            .ok_or_else(|| refused("staff token not recognised"));
    }
    match cookie(headers, SESSION_COOKIE) {
        Some(value) => state
            .sessions
            .verify(value, state.clock.now_ms())
            .filter(|h| state.live().staff.knows(h))
            .ok_or_else(|| refused("the staff session has ended: sign in again at /staff")),
        None => Err(refused(
            "staff endpoints need Authorization: Bearer <staff token> or a staff console sign-in",
        )),
    }
}

/// Who is entering codes, for the lockouts.
#[derive(Debug, Clone, Copy)]
pub enum Entrant {
    Staff(TokenHash),
    /// The vending keypad (or a phone at it), by client address.
    Keypad(IpAddr),
}

/// Wrong codes: per staff token and for the staffed touchpoint; per address and for the
/// keypad as a whole (so strangers at the keypad cannot lock staff out).
#[derive(Debug)]
pub struct WrongCodes {
    pub per_token: Lockouts<TokenHash>,
    pub device: Lockouts<()>,
    pub per_client: Lockouts<IpAddr>,
    pub keypad: Lockouts<()>,
}

impl WrongCodes {
    /// `per_entrant` wrong codes lock one token or address, `per_device` the touchpoint.
    pub fn new(per_entrant: u32, per_device: u32, window_ms: i64) -> Self {
        let policy = |max_failures| LockoutPolicy {
            max_failures,
            window_ms,
            lock_ms: window_ms,
        };
        WrongCodes {
            per_token: Lockouts::new(policy(per_entrant)),
            device: Lockouts::new(policy(per_device)),
            per_client: Lockouts::new(policy(per_entrant)),
            keypad: Lockouts::new(policy(per_device)),
        }
    }

    fn check(&self, who: Entrant, now: i64) -> Result<(), Locked> {
        match who {
            Entrant::Staff(t) => self
                .per_token
                .check(&t, now)
                .and(self.device.check(&(), now)),
            Entrant::Keypad(ip) => self
                .per_client
                .check(&ip, now)
                .and(self.keypad.check(&(), now)),
        }
    }

    fn failure(&mut self, who: Entrant, now: i64) -> Option<Locked> {
        match who {
            Entrant::Staff(t) => {
                let a = self.per_token.failure(&t, now);
                let b = self.device.failure(&(), now);
                a.or(b)
            }
            Entrant::Keypad(ip) => {
                let a = self.per_client.failure(&ip, now);
                let b = self.keypad.failure(&(), now);
                a.or(b)
            }
        }
    }

    /// Forgets what has run out.
    pub fn prune(&mut self, now: i64) {
        self.per_token.prune(now);
        self.per_client.prune(now);
    }
}

/// Refused while `who` or its touchpoint is locked out: a 429 that says until when.
pub fn check_lockout(state: &AppState, who: Entrant, now: i64) -> Result<(), ApiError> {
    let locks = state.wrong_codes.lock().unwrap_or_else(|e| e.into_inner());
    locks.check(who, now).map_err(|lock| {
        state.metrics.rejection("wrong_codes_lockout");
        let until = jiff::Timestamp::from_millisecond(lock.until_ms)
            .map(|t| t.to_string())
            .unwrap_or_default();
        ApiError::too_many(
            "wrong_codes_lockout",
            format!("too many wrong codes: locked until {until}"),
            std::time::Duration::from_millis(lock.remaining_ms(now) as u64),
        )
    })
}

/// Counts a wrong code against `who` and its touchpoint.
pub fn wrong_code(state: &AppState, who: Entrant, now: i64) {
    let mut locks = state.wrong_codes.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(lock) = locks.failure(who, now) {
        tracing::warn!(
            until_ms = lock.until_ms,
            keypad = matches!(who, Entrant::Keypad(_)),
            "too many wrong codes: locked out"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_signed_and_expire() {
        let s = StaffSessions::new(&HmacKey::from_bytes(b"fleet-secret-one"));
        let staff = TokenHash::of("demo-staff-token");
        let v = s.issue(&staff, 1_000);
        assert_eq!(s.verify(&v, 2_000), Some(staff));
        assert_eq!(s.verify(&v, 1_000 + SESSION_MS), None, "expired");
        let other = StaffSessions::new(&HmacKey::from_bytes(b"fleet-secret-two"));
        assert_eq!(other.verify(&v, 2_000), None, "another fleet's key");
        let forged = v.replacen(&format!("{}", 1_000 + SESSION_MS), "99999999999999", 1);
        assert_eq!(
            s.verify(&forged, 2_000),
            None,
            "a longer expiry breaks the MAC"
        );
        assert_eq!(s.verify("junk", 2_000), None);
    }
}
