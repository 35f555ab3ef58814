//! Where else a SKU is in stock: the query a touchpoint (or an operator) asks, checked field
//! by field, and the ranking of the touchpoints that have it, nearest first. No I/O: the
//! store reads the candidates ([`super::store::stock::available`]).

use std::cmp::Ordering;

use caidan_sync::contract::ids::shown;
use caidan_sync::contract::{IdError, Ident, Location, Name};
use serde::{Deserialize, Serialize};

/// Touchpoints listed when the query names no `limit`.
pub const DEFAULT_LIMIT: usize = 5;
/// Most touchpoints one answer lists.
pub const MAX_LIMIT: usize = 50;

/// The query string as sent, every value as text so that each bad one gets its own error.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NearbyParams {
    pub lat: Option<String>,
    pub lon: Option<String>,
    pub limit: Option<String>,
    pub exclude: Option<String>,
    /// Refused when present: tokens never travel in URLs.
    pub token: Option<String>,
}

/// Why a stock query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NearbyError {
    #[error("tokens are never taken from the URL; use Authorization: Bearer")]
    TokenInUrl,
    #[error("fleet: {0}")]
    Fleet(IdError),
    #[error("sku: {0}")]
    Sku(IdError),
    #[error("lat must be a number from -90 to 90, got {0}")]
    Lat(String),
    #[error("lon must be a number from -180 to 180, got {0}")]
    Lon(String),
    #[error("lat and lon go together: give both or neither")]
    HalfLocation,
    #[error("limit must be a whole number from 1 to {MAX_LIMIT}, got {0}")]
    Limit(String),
    #[error("exclude: {0}")]
    Exclude(IdError),
}

/// A checked stock query.
#[derive(Debug, Clone, PartialEq)]
pub struct NearbyQuery {
    pub fleet: Name,
    pub sku: Ident,
    /// Where the asker stands; without it no distances are given.
    pub from: Option<Location>,
    pub limit: usize,
    /// A device to leave out (the asking one).
    pub exclude: Option<Name>,
}

impl NearbyParams {
    /// Refuses a token in the URL before anything else looks at the request.
    pub fn refuse_token(&self) -> Result<(), NearbyError> {
        match self.token {
            Some(_) => Err(NearbyError::TokenInUrl),
            None => Ok(()),
        }
    }
}

impl NearbyQuery {
    /// Checks the path's `fleet` and `sku` and every query value.
    pub fn parse(fleet: &str, sku: &str, p: &NearbyParams) -> Result<NearbyQuery, NearbyError> {
        p.refuse_token()?;
        let fleet = Name::new(fleet).map_err(NearbyError::Fleet)?;
        let sku = Ident::new(sku).map_err(NearbyError::Sku)?;
        let coord = |v: &Option<String>, bound: f64, err: fn(String) -> NearbyError| {
            v.as_deref()
                .map(|t| match t.trim().parse::<f64>() {
                    Ok(x) if (-bound..=bound).contains(&x) => Ok(x),
                    _ => Err(err(shown(t))),
                })
                .transpose()
        };
        let lat = coord(&p.lat, 90.0, NearbyError::Lat)?;
        let lon = coord(&p.lon, 180.0, NearbyError::Lon)?;
        let from = match (lat, lon) {
            (Some(lat), Some(lon)) => Location::new(lat, lon),
            (None, None) => None,
            _ => return Err(NearbyError::HalfLocation),
        };
        let limit = match p.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(t) => match t.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => return Err(NearbyError::Limit(shown(t))),
            },
        };
        let exclude = p
            .exclude
            .as_deref()
            .map(Name::new)
            .transpose()
            .map_err(NearbyError::Exclude)?;
        Ok(NearbyQuery {
            fleet,
            sku,
            from,
            limit,
            exclude,
        })
    }
}

/// A touchpoint whose latest level has units of the SKU, as the store reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub device: String,
    pub on_hand: u32,
    pub reserved: u32,
    /// Device time of the event that set the level.
    pub time_ms: i64,
    pub location: Option<Location>,
    /// From the last state message; `None` when none arrived yet.
    pub online: Option<bool>,
}

/// One touchpoint of the answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Touchpoint {
    pub device: String,
    /// Units a new order may take: `on_hand - reserved`.
    pub available: u32,
    pub on_hand: u32,
    pub reserved: u32,
    /// Metres from the asker (to 0.1 m); `None` unless both locations are known.
    pub distance_m: Option<f64>,
    pub location: Option<Location>,
    pub online: Option<bool>,
    /// When the level was recorded at the touchpoint (its clock), RFC 3339.
    pub updated_at: String,
}

/// The answer of `GET /api/v1/fleets/{fleet}/stock/{sku}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NearbyStock {
    pub sku: String,
    pub touchpoints: Vec<Touchpoint>,
}

/// Ranks `candidates` for `q`: units available only, without the excluded device, nearest
/// first, those without a distance after all with one, ties by device name; at most
/// `q.limit`.
pub fn rank(q: &NearbyQuery, candidates: Vec<Candidate>) -> NearbyStock {
    let mut found: Vec<Touchpoint> = candidates
        .into_iter()
        .filter(|c| c.on_hand > c.reserved)
        .filter(|c| q.exclude.as_ref().is_none_or(|x| x.as_str() != c.device))
        .map(|c| {
            let distance_m = q
                .from
                .zip(c.location)
                .map(|(a, b)| (a.distance_m(&b) * 10.0).round() / 10.0);
            Touchpoint {
                available: c.on_hand - c.reserved,
                on_hand: c.on_hand,
                reserved: c.reserved,
                distance_m,
                location: c.location,
                online: c.online,
                updated_at: jiff::Timestamp::from_millisecond(c.time_ms)
                    .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
                    .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
                    .to_string(),
                device: c.device,
            }
        })
        .collect();
    found.sort_by(|a, b| {
        let by_distance = match (a.distance_m, b.distance_m) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        by_distance.then_with(|| a.device.cmp(&b.device))
    });
    found.truncate(q.limit);
    NearbyStock {
        sku: q.sku.as_str().to_owned(),
        touchpoints: found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> NearbyParams {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        NearbyParams {
            lat: get("lat"),
            lon: get("lon"),
            limit: get("limit"),
            exclude: get("exclude"),
            token: get("token"),
        }
    }

    fn parse(sku: &str, pairs: &[(&str, &str)]) -> Result<NearbyQuery, NearbyError> {
        NearbyQuery::parse("demo", sku, &params(pairs))
    }

    #[test]
    fn parses_defaults_and_bounds() {
        let q = parse("cola", &[]).unwrap();
        assert_eq!((q.limit, q.from, q.exclude), (DEFAULT_LIMIT, None, None));
        let q = parse(
            "cola",
            &[
                ("lat", "31.24"),
                ("lon", "-121.49"),
                ("limit", "50"),
                ("exclude", "d1"),
            ],
        )
        .unwrap();
        assert_eq!(q.from, Location::new(31.24, -121.49));
        assert_eq!(q.limit, 50);
        assert_eq!(q.exclude.unwrap().as_str(), "d1");
        assert!(parse("cola", &[("lat", "90"), ("lon", "180")]).is_ok());
    }

    #[test]
    fn refuses_each_bad_value_with_its_reason() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("co la", &[], "sku:"),
            ("", &[], "sku:"),
            ("cola", &[("lat", "91"), ("lon", "0")], "lat must be"),
            ("cola", &[("lat", "NaN"), ("lon", "0")], "lat must be"),
            ("cola", &[("lat", "0"), ("lon", "-180.5")], "lon must be"),
            ("cola", &[("lat", "0"), ("lon", "east")], "lon must be"),
            ("cola", &[("lat", "1")], "give both"),
            ("cola", &[("lon", "1")], "give both"),
            ("cola", &[("limit", "0")], "limit must be"),
            ("cola", &[("limit", "51")], "limit must be"),
            ("cola", &[("limit", "-1")], "limit must be"),
            ("cola", &[("limit", "2.5")], "limit must be"),
            ("cola", &[("exclude", "Dev 1")], "exclude:"),
            ("cola", &[("token", "demo-fleet-token")], "never taken"),
        ];
        for (sku, pairs, want) in cases {
            let e = parse(sku, pairs).unwrap_err().to_string();
            assert!(e.contains(want), "{sku} {pairs:?}: {e}");
        }
        let e = NearbyQuery::parse("Bad Fleet", "cola", &NearbyParams::default()).unwrap_err();
        assert!(matches!(e, NearbyError::Fleet(_)), "{e}");
        // A long bad value is cut before it is echoed.
        let long = "9".repeat(500);
        let e = parse("cola", &[("limit", &long)]).unwrap_err().to_string();
        assert!(e.len() < 200, "{e}");
    }

    fn candidate(device: &str, on_hand: u32, reserved: u32, at: Option<(f64, f64)>) -> Candidate {
        Candidate {
            device: device.into(),
            on_hand,
            reserved,
            time_ms: 1_764_590_400_000,
            location: at.and_then(|(lat, lon)| Location::new(lat, lon)),
            online: Some(true),
        }
    }

    #[test]
    fn nearest_first_without_location_last_limited() {
        let bund = (31.2400, 121.4900);
        let square = (31.2304, 121.4737);
        let hongqiao = (31.1979, 121.3363);
        let all = vec![
            candidate("far", 5, 0, Some(hongqiao)),
            candidate("nowhere-b", 1, 0, None),
            candidate("near", 5, 2, Some(square)),
            candidate("nowhere-a", 1, 0, None),
            candidate("empty", 3, 3, Some(bund)),
            candidate("me", 9, 0, Some(bund)),
        ];
        let mut q = parse("cola", &[("lat", "31.2400"), ("lon", "121.4900")]).unwrap();
        q.exclude = Some(Name::new("me").unwrap());
        let got = rank(&q, all.clone());
        let order: Vec<&str> = got.touchpoints.iter().map(|t| t.device.as_str()).collect();
        assert_eq!(order, ["near", "far", "nowhere-a", "nowhere-b"]);
        let near = &got.touchpoints[0];
        assert_eq!((near.available, near.on_hand, near.reserved), (3, 5, 2));
        let d = near.distance_m.unwrap();
        assert!((1_800.0..2_000.0).contains(&d), "{d}");
        assert_eq!(near.updated_at, "2025-12-01T12:00:00.000Z");
        assert_eq!(got.touchpoints[2].distance_m, None);

        q.limit = 1;
        assert_eq!(rank(&q, all.clone()).touchpoints.len(), 1);
        // Without a location of the asker: no distances, by device name.
        let q = parse("cola", &[]).unwrap();
        let got = rank(&q, all);
        assert!(got.touchpoints.iter().all(|t| t.distance_m.is_none()));
        let order: Vec<&str> = got.touchpoints.iter().map(|t| t.device.as_str()).collect();
        assert_eq!(order, ["far", "me", "near", "nowhere-a", "nowhere-b"]);
    }
}
