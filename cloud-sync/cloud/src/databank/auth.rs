//! Who may read the data bank: brands (each only its own funnel), fleet operators
//! (fleet-wide endpoints) and fleets (the read credential a fleet's devices use for stock
//! lookups in their own fleet), loaded from one TOML file. Tokens are kept as hashes and
//! checked with the shared [`TokenSet`].

use std::path::Path;

use caidan_sync::contract::{Ident, Name};
use caidan_sync::credentials::{TokenHash, TokenSet};
use serde::Deserialize;
use thiserror::Error;

/// The demo access file used by `caidan-cloud dev`: the demo catalogue's brands (tokens
/// `demo-token-lumi`, `demo-token-dawn`, `demo-token-orbit`, `demo-token-papermoon`), one
/// operator (`demo-operator-token`) and the demo fleet's devices (`demo-fleet-token`).
pub const DEMO_BRANDS: &str = include_str!("../../examples/databank/brands.toml");

/// The demo acknowledgement signing key used by `caidan-cloud dev`; the demo agent config
/// trusts its public key. For development only: make a real one with `caidan-cloud ack-key`.
pub const DEMO_ACK_KEY: &str = include_str!("../../examples/databank/ack.key");

/// Why an access file was refused.
#[derive(Debug, Error)]
pub enum AccessError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Parse {
        file: String,
        source: Box<toml::de::Error>,
    },
    #[error("{file}: {table}[{index}].{field}: {reason}")]
    Invalid {
        file: String,
        table: &'static str,
        index: usize,
        field: &'static str,
        reason: String,
    },
}

/// Why a request was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing or unknown token")]
    Unauthorized,
    #[error("token does not belong to brand {0}")]
    Forbidden(String),
    #[error("this endpoint needs an operator token")]
    NotOperator,
    #[error("token does not belong to fleet {0}")]
    OtherFleet(String),
    #[error("this endpoint needs the fleet's token or an operator token")]
    NotFleet,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessFile {
    #[serde(default)]
    brand: Vec<BrandEntry>,
    #[serde(default)]
    operator: Vec<OperatorEntry>,
    #[serde(default)]
    fleet: Vec<FleetEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BrandEntry {
    id: String,
    #[serde(default)]
    name: String,
    token_sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorEntry {
    name: String,
    token_sha256: String,
}

/// A fleet's read credential; a fleet may be listed more than once (token rotation).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetEntry {
    name: String,
    token_sha256: String,
}

/// One brand.
#[derive(Debug, Clone)]
pub struct Brand {
    pub id: Ident,
    pub name: String,
}

/// What a token grants.
#[derive(Debug, Clone)]
enum Grant {
    Brand(usize),
    Operator(Name),
    Fleet(Name),
}

/// All brands, operators and fleet credentials, with token checks.
#[derive(Debug, Clone, Default)]
pub struct Access {
    brands: Vec<Brand>,
    tokens: TokenSet<Grant>,
}

impl Access {
    /// Loads and validates an access file.
    pub fn load(path: &Path) -> Result<Access, AccessError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AccessError::Read {
            file: file.clone(),
            source,
        })?;
        Access::parse(&file, &text)
    }

    /// Parses and validates access TOML; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Access, AccessError> {
        let parsed: AccessFile = toml::from_str(text).map_err(|e| AccessError::Parse {
            file: file.to_owned(),
            source: Box::new(e),
        })?;
        let invalid = |table, index, field, reason: String| AccessError::Invalid {
            file: file.to_owned(),
            table,
            index,
            field,
            reason,
        };
        let mut brands: Vec<Brand> = Vec::new();
        let mut tokens = Vec::new();
        for (index, b) in parsed.brand.into_iter().enumerate() {
            let id = Ident::new(b.id).map_err(|e| invalid("brand", index, "id", e.to_string()))?;
            if brands.iter().any(|o| o.id == id) {
                return Err(invalid("brand", index, "id", "duplicate brand id".into()));
            }
            let hash = TokenHash::parse_lenient(&b.token_sha256)
                .map_err(|e| invalid("brand", index, "token_sha256", e.to_string()))?;
            tokens.push((hash, Grant::Brand(brands.len())));
            brands.push(Brand { id, name: b.name });
        }
        for (index, o) in parsed.operator.into_iter().enumerate() {
            let name =
                Name::new(o.name).map_err(|e| invalid("operator", index, "name", e.to_string()))?;
            let hash = TokenHash::parse_lenient(&o.token_sha256)
                .map_err(|e| invalid("operator", index, "token_sha256", e.to_string()))?;
            tokens.push((hash, Grant::Operator(name)));
        }
        for (index, f) in parsed.fleet.into_iter().enumerate() {
            let name =
                Name::new(f.name).map_err(|e| invalid("fleet", index, "name", e.to_string()))?;
            let hash = TokenHash::parse_lenient(&f.token_sha256)
                .map_err(|e| invalid("fleet", index, "token_sha256", e.to_string()))?;
            tokens.push((hash, Grant::Fleet(name)));
        }
        Ok(Access {
            brands,
            tokens: TokenSet::new(tokens),
        })
    }

    /// All brands, in file order.
    pub fn brands(&self) -> &[Brand] {
        &self.brands
    }

    /// Checks that `token` may read `brand`'s data.
    pub fn authorize_brand(&self, token: Option<&str>, brand: &str) -> Result<(), AuthError> {
        match token.and_then(|t| self.tokens.lookup(t)) {
            None => Err(AuthError::Unauthorized),
            Some(Grant::Brand(i)) if self.brands[*i].id.as_str() == brand => Ok(()),
            Some(_) => Err(AuthError::Forbidden(caidan_sync::contract::ids::shown(
                brand,
            ))),
        }
    }

    /// Checks that `token` is an operator's; returns the operator's name.
    pub fn authorize_operator(&self, token: Option<&str>) -> Result<&Name, AuthError> {
        match token.and_then(|t| self.tokens.lookup(t)) {
            None => Err(AuthError::Unauthorized),
            Some(Grant::Operator(name)) => Ok(name),
            Some(Grant::Brand(_) | Grant::Fleet(_)) => Err(AuthError::NotOperator),
        }
    }

    /// Checks that `token` may read `fleet`'s stock: that fleet's own token, or an
    /// operator's. Another fleet's token or a brand's is refused.
    pub fn authorize_fleet(&self, token: Option<&str>, fleet: &str) -> Result<(), AuthError> {
        match token.and_then(|t| self.tokens.lookup(t)) {
            None => Err(AuthError::Unauthorized),
            Some(Grant::Operator(_)) => Ok(()),
            Some(Grant::Fleet(name)) if name.as_str() == fleet => Ok(()),
            Some(Grant::Fleet(_)) => Err(AuthError::OtherFleet(caidan_sync::contract::ids::shown(
                fleet,
            ))),
            Some(Grant::Brand(_)) => Err(AuthError::NotFleet),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_file_authorizes_each_brand_only() {
        let access = Access::parse("demo", DEMO_BRANDS).unwrap();
        assert_eq!(access.brands().len(), 4);
        assert_eq!(
            access.authorize_brand(Some("demo-token-lumi"), "lumi-cola"),
            Ok(())
        );
        assert_eq!(
            access.authorize_brand(Some("demo-token-lumi"), "dawn-coffee"),
            Err(AuthError::Forbidden("\"dawn-coffee\"".into()))
        );
        assert_eq!(
            access.authorize_brand(Some("nope"), "lumi-cola"),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(
            access.authorize_brand(None, "lumi-cola"),
            Err(AuthError::Unauthorized)
        );
    }

    #[test]
    fn operators_and_brands_do_not_stand_in_for_each_other() {
        let access = Access::parse("demo", DEMO_BRANDS).unwrap();
        assert_eq!(
            access
                .authorize_operator(Some("demo-operator-token"))
                .map(|n| n.as_str()),
            Ok("demo-ops")
        );
        assert_eq!(
            access.authorize_operator(Some("demo-token-lumi")),
            Err(AuthError::NotOperator)
        );
        assert_eq!(
            access.authorize_operator(None),
            Err(AuthError::Unauthorized)
        );
        assert!(matches!(
            access.authorize_brand(Some("demo-operator-token"), "lumi-cola"),
            Err(AuthError::Forbidden(_))
        ));
    }

    #[test]
    fn fleet_tokens_read_their_own_fleet_only() {
        let other = format!(
            "{DEMO_BRANDS}\n[[fleet]]\nname = \"north\"\ntoken_sha256 = \"{}\"\n",
            caidan_sync::credentials::TokenHash::of("north-token")
        );
        let access = Access::parse("demo", &other).unwrap();
        assert_eq!(
            access.authorize_fleet(Some("demo-fleet-token"), "demo"),
            Ok(())
        );
        assert_eq!(access.authorize_fleet(Some("north-token"), "north"), Ok(()));
        assert_eq!(
            access.authorize_fleet(Some("north-token"), "demo"),
            Err(AuthError::OtherFleet("\"demo\"".into()))
        );
        assert_eq!(
            access.authorize_fleet(Some("demo-operator-token"), "north"),
            Ok(())
        );
        assert_eq!(
            access.authorize_fleet(Some("demo-token-lumi"), "demo"),
            Err(AuthError::NotFleet)
        );
        assert_eq!(
            access.authorize_fleet(Some("forged"), "demo"),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(
            access.authorize_fleet(None, "demo"),
            Err(AuthError::Unauthorized)
        );
        // A fleet token is no operator's and reads no brand's funnel.
        assert_eq!(
            access.authorize_operator(Some("demo-fleet-token")),
            Err(AuthError::NotOperator)
        );
        assert!(matches!(
            access.authorize_brand(Some("demo-fleet-token"), "lumi-cola"),
            Err(AuthError::Forbidden(_))
        ));
    }

    #[test]
    fn rejects_bad_files_naming_the_field() {
        let err = Access::parse("b.toml", "[[brand]]\nid = \"x\"\ntoken_sha256 = \"zz\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("b.toml: brand[0].token_sha256"), "{err}");
        let err = Access::parse("b.toml", "[[brand]]\nid = \"x\"\ntoken = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
        let err = Access::parse(
            "b.toml",
            &format!(
                "[[operator]]\nname = \"Ops!\"\ntoken_sha256 = \"{}\"\n",
                "a".repeat(64)
            ),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("b.toml: operator[0].name"), "{err}");
        let err = Access::parse(
            "b.toml",
            "[[fleet]]\nname = \"demo\"\ntoken_sha256 = \"x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("b.toml: fleet[0].token_sha256"), "{err}");
        let err = Access::parse(
            "b.toml",
            &format!(
                "[[fleet]]\nname = \"Demo Fleet\"\ntoken_sha256 = \"{}\"\n",
                "a".repeat(64)
            ),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("b.toml: fleet[0].name"), "{err}");
        let err = Access::parse("b.toml", "[[fleet]]\nname = \"demo\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("token_sha256"), "{err}");
    }
}
