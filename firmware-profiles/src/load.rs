//! Reading profiles from text, files and directories.

use std::fs;
use std::path::Path;

use crate::validate::validate;
use crate::{Profile, ProfileError};

impl Profile {
    /// Parses and validates a profile. `origin` names the source in every error (a file name,
    /// or something like `"<config>"`); the name is not tied to it, unlike [`Profile::load`].
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        parse(text, origin, None)
    }

    /// Reads, parses and validates the profile at `path`; its `name` must equal the file stem.
    pub fn load(path: impl AsRef<Path>) -> Result<Profile, ProfileError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: origin.clone(),
            source,
        })?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        parse(&text, &origin, Some(&stem))
    }

    /// Checks the rules a profile must satisfy, for profiles built or edited in code.
    pub fn validate(&self, origin: &str) -> Result<(), ProfileError> {
        validate(self, origin, None)
    }
}

/// Parses then validates; with `stem`, `name` must equal it.
pub(crate) fn parse(text: &str, origin: &str, stem: Option<&str>) -> Result<Profile, ProfileError> {
    let profile: Profile = toml::from_str(text).map_err(|source| ProfileError::Parse {
        file: origin.to_owned(),
        source,
    })?;
    validate(&profile, origin, stem)?;
    Ok(profile)
}

/// Loads every `*.toml` file directly inside `dir`, sorted by name; the first bad file fails
/// the whole call so a broken profile is never silently skipped. Other entries are ignored.
pub fn load_dir(dir: impl AsRef<Path>) -> Result<Vec<Profile>, ProfileError> {
    let dir = dir.as_ref();
    let read_err = |source| ProfileError::Read {
        path: dir.display().to_string(),
        source,
    };
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "toml") {
            paths.push(path);
        }
    }
    paths.sort();
    paths.iter().map(Profile::load).collect()
}
