//! Brands and their API tokens (stored as SHA-256 hex), loaded from a TOML file.

use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// The demo brands file used by `caidan-cloud dev` (the demo catalogue's brands; tokens `demo-token-lumi`, `demo-token-dawn`, `demo-token-orbit`, `demo-token-papermoon`).
pub const DEMO_BRANDS: &str = include_str!("../../examples/databank/brands.toml");

/// Why a brands file was refused.
#[derive(Debug, Error)]
pub enum BrandsError {
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
    #[error("{file}: brand[{index}].{field}: {reason}")]
    Invalid {
        file: String,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BrandsFile {
    #[serde(default)]
    brand: Vec<Brand>,
}

/// One brand.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Brand {
    pub id: String,
    #[serde(default)]
    pub name: String,
    token_sha256: String,
    #[serde(skip)]
    hash: [u8; 32],
}

/// All brands, with token checks.
#[derive(Debug, Clone, Default)]
pub struct Brands {
    brands: Vec<Brand>,
}

impl Brands {
    /// Loads and validates a brands file.
    pub fn load(path: &Path) -> Result<Brands, BrandsError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| BrandsError::Read {
            file: file.clone(),
            source,
        })?;
        Brands::parse(&file, &text)
    }

    /// Parses and validates brands TOML; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Brands, BrandsError> {
        let parsed: BrandsFile = toml::from_str(text).map_err(|e| BrandsError::Parse {
            file: file.to_owned(),
            source: Box::new(e),
        })?;
        let invalid = |index, field, reason: &str| BrandsError::Invalid {
            file: file.to_owned(),
            index,
            field,
            reason: reason.to_owned(),
        };
        let mut brands = parsed.brand;
        for index in 0..brands.len() {
            let b = &brands[index];
            if b.id.is_empty()
                || !b
                    .id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(invalid(
                    index,
                    "id",
                    "must be non-empty letters, digits, '-', '_' or '.'",
                ));
            }
            if brands[..index].iter().any(|o| o.id == b.id) {
                return Err(invalid(index, "id", "duplicate brand id"));
            }
            let bytes = hex::decode(&b.token_sha256)
                .ok()
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| invalid(index, "token_sha256", "must be 64 hex digits (SHA-256)"))?;
            brands[index].hash = bytes;
        }
        Ok(Brands { brands })
    }

    /// All brands, in file order.
    pub fn all(&self) -> &[Brand] {
        &self.brands
    }

    /// The brand owning `token`, compared in constant time.
    pub fn owner(&self, token: &str) -> Option<&Brand> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.brands
            .iter()
            .find(|b| bool::from(b.hash.ct_eq(&digest)))
    }

    /// Checks that `token` may read `brand`'s data.
    pub fn authorize(&self, token: Option<&str>, brand: &str) -> Result<(), AuthError> {
        let owner = token
            .filter(|t| !t.is_empty())
            .and_then(|t| self.owner(t))
            .ok_or(AuthError::Unauthorized)?;
        if owner.id == brand {
            Ok(())
        } else {
            Err(AuthError::Forbidden(brand.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_file_authorizes_each_brand_only() {
        let brands = Brands::parse("demo", DEMO_BRANDS).unwrap();
        assert_eq!(brands.all().len(), 4);
        assert_eq!(
            brands.authorize(Some("demo-token-lumi"), "lumi-cola"),
            Ok(())
        );
        assert_eq!(
            brands.authorize(Some("demo-token-lumi"), "dawn-coffee"),
            Err(AuthError::Forbidden("dawn-coffee".into()))
        );
        assert_eq!(
            brands.authorize(Some("nope"), "lumi-cola"),
            Err(AuthError::Unauthorized)
        );
        assert_eq!(
            brands.authorize(None, "lumi-cola"),
            Err(AuthError::Unauthorized)
        );
    }

    #[test]
    fn rejects_bad_files_naming_the_field() {
        let err = Brands::parse("b.toml", "[[brand]]\nid = \"x\"\ntoken_sha256 = \"zz\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("b.toml: brand[0].token_sha256"), "{err}");
        let err = Brands::parse("b.toml", "[[brand]]\nid = \"x\"\ntoken = \"a\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
