//! `[limits]`: what one client may take, and the HTTP deadlines and caps; unset fields come
//! from the firmware profile or the defaults.

use serde::Deserialize;

use crate::limits::{ClientLimits, Rate};

/// Limits on what one client may take. Connection caps and the per-window claim cap come
/// from the profile unless set here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub eggs_per_client: Rate,
    pub eggs_per_shopper: Rate,
    pub scans_per_client: Rate,
    /// New claims a minute the screen can plausibly see (the profile's unless set).
    pub claims_per_minute: Option<u32>,
    pub max_connections: Option<u32>,
    pub max_connections_per_client: Option<u32>,
    pub header_timeout_ms: u64,
    pub idle_timeout_ms: u64,
    /// Wrong redemption codes one staff token may enter before it is locked out.
    pub wrong_codes_per_staff_token: u32,
    /// Wrong redemption codes the whole touchpoint takes before every token is locked out.
    pub wrong_codes_per_device: u32,
    /// Window the wrong codes are counted in, and how long a lockout lasts.
    pub lockout_minutes: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let c = ClientLimits::default();
        LimitsConfig {
            eggs_per_client: c.eggs_per_client,
            eggs_per_shopper: c.eggs_per_shopper,
            scans_per_client: c.scans_per_client,
            claims_per_minute: None,
            max_connections: None,
            max_connections_per_client: None,
            header_timeout_ms: 5_000,
            idle_timeout_ms: 15_000,
            wrong_codes_per_staff_token: 10,
            wrong_codes_per_device: 30,
            lockout_minutes: 10,
        }
    }
}

impl LimitsConfig {
    pub fn clients(&self) -> ClientLimits {
        ClientLimits {
            eggs_per_client: self.eggs_per_client,
            eggs_per_shopper: self.eggs_per_shopper,
            scans_per_client: self.scans_per_client,
        }
    }
}

impl LimitsConfig {
    /// Checks every bound; the error names the field.
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        let l = self;
        for (field, rate) in [
            ("limits.eggs_per_client", l.eggs_per_client),
            ("limits.eggs_per_shopper", l.eggs_per_shopper),
            ("limits.scans_per_client", l.scans_per_client),
        ] {
            if !(1..=1_000_000).contains(&rate.per_minute) || !(1..=100_000).contains(&rate.burst) {
                return Err((
                    field,
                    "per_minute must be 1..=1000000 and burst 1..=100000".into(),
                ));
            }
        }
        if l.claims_per_minute
            .is_some_and(|n| !(1..=1_000_000).contains(&n))
        {
            return Err(("limits.claims_per_minute", "must be 1..=1000000".into()));
        }
        if l.max_connections
            .is_some_and(|n| !(8..=65_536).contains(&n))
        {
            return Err(("limits.max_connections", "must be 8..=65536".into()));
        }
        if l.max_connections_per_client.is_some_and(|n| n == 0) {
            return Err((
                "limits.max_connections_per_client",
                "must be at least 1".into(),
            ));
        }
        if !(100..=300_000).contains(&l.header_timeout_ms)
            || !(100..=3_600_000).contains(&l.idle_timeout_ms)
        {
            return Err((
                "limits.header_timeout_ms",
                "header_timeout_ms must be 100..=300000 and idle_timeout_ms 100..=3600000".into(),
            ));
        }
        if l.wrong_codes_per_staff_token == 0
            || l.wrong_codes_per_device == 0
            || l.lockout_minutes == 0
        {
            return Err((
                "limits.wrong_codes_per_staff_token",
                "wrong-code limits and lockout_minutes must be at least 1".into(),
            ));
        }
        Ok(())
    }
}
