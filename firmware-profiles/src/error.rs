//! Errors from reading and validating profiles; every message starts with the file it concerns.

use std::io;

/// Why a profile could not be read or was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file or directory could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    /// Not valid TOML, or not the profile shape: unknown field, missing section, bad enum value.
    /// The toml crate's message carries the line and column.
    #[error("{file}: {}", source.to_string().trim_end())]
    Parse {
        file: String,
        #[source]
        source: toml::de::Error,
    },
    /// Parsed, but a value breaks a rule.
    #[error("{file}: {field}: {reason}")]
    Invalid {
        file: String,
        field: String,
        reason: String,
    },
}

impl ProfileError {
    /// The dotted field path an [`ProfileError::Invalid`] is about.
    pub fn field(&self) -> Option<&str> {
        match self {
            ProfileError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}
