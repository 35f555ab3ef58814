//! The operator's signing key: `operator.key` (the secret, readable by its owner only) and
//! `operator.pub` (the `ed25519:<hex>` line agents trust), never over an existing pair.

use std::path::{Path, PathBuf};

use caidan_sync::keys::{KeyId, PublicKey, SecretKey};

use super::FleetError;

/// A key pair just written.
#[derive(Debug)]
pub struct OperatorKey {
    pub secret_path: PathBuf,
    pub public_path: PathBuf,
    pub public: PublicKey,
    pub id: KeyId,
}

impl OperatorKey {
    /// The line an agent's config needs to trust this key.
    pub fn trust_line(&self) -> String {
        format!("[trust] config = [\"{}\"]", self.public)
    }
}

/// Writes a new key pair into `dir` (created if missing); refuses when either file exists.
pub fn keygen(dir: &Path) -> Result<OperatorKey, FleetError> {
    let secret_path = dir.join("operator.key");
    let public_path = dir.join("operator.pub");
    for path in [&secret_path, &public_path] {
        if path.exists() {
            return Err(FleetError::KeyExists { path: path.clone() });
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| FleetError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let key = SecretKey::generate();
    key.write(&secret_path)?;
    let public = key.public();
    Ok(OperatorKey {
        secret_path,
        public_path,
        id: public.id(),
        public,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_pair_once() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("keys");
        let k = keygen(&out).unwrap();
        let public = std::fs::read_to_string(&k.public_path).unwrap();
        assert_eq!(public.trim(), k.public.to_string());
        let loaded = SecretKey::load(&k.secret_path).unwrap();
        assert_eq!(loaded.public(), k.public);
        assert!(k.trust_line().starts_with("[trust] config = [\"ed25519:"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&k.secret_path)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(keygen(&out), Err(FleetError::KeyExists { .. })));
        std::fs::remove_file(&k.secret_path).unwrap();
        assert!(
            matches!(keygen(&out), Err(FleetError::KeyExists { path }) if path.ends_with("operator.pub")),
            "a lone public key is not overwritten either"
        );
    }
}
