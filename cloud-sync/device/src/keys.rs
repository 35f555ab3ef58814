//! Ed25519 keys of the fleet: who signs what (the data bank its acknowledgements, operators
//! their config documents) and which keys a device trusts. Public keys are written
//! `ed25519:<64 hex digits>`; a key is named on the wire by its [`KeyId`], the first 8 bytes
//! of the SHA-256 of the public key, in hex. Signatures travel as unpadded base64url.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

/// Text before a public key's hex.
const PREFIX: &str = "ed25519:";

/// Why a key, a key file or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a public key is ed25519:<64 hex digits>")]
    BadPublicKey,
    #[error("a secret key file holds 64 hex digits (a 32-byte Ed25519 seed)")]
    BadSecretKey,
    #[error("cannot read key file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot write key file {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("signed by key {0}, which is not trusted")]
    UntrustedKey(String),
    #[error("the signature is not valid base64url of 64 bytes")]
    GarbledSignature,
    #[error("the signature does not verify")]
    BadSignature,
}

/// The short name of a public key: the first 8 bytes of its SHA-256, as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 8]);

impl KeyId {
    fn of(key: &VerifyingKey) -> KeyId {
        let digest = Sha256::digest(key.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for KeyId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "key_id".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "minLength": 16,
            "maxLength": 16,
            "pattern": "^[0-9a-f]+$",
        })
    }
}

impl FromStr for KeyId {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        hex::decode(s)
            .ok()
            .and_then(|v| <[u8; 8]>::try_from(v).ok())
            .map(KeyId)
            .ok_or(KeyError::UntrustedKey(crate::contract::ids::shown(s)))
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn id(&self) -> KeyId {
        KeyId::of(&self.0)
    }

    /// Whether `signature` (base64url) is this key's over `message`.
    pub fn verify(&self, message: &[u8], signature: &str) -> Result<(), KeyError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .and_then(|v| <[u8; 64]>::try_from(v).ok())
            .ok_or(KeyError::GarbledSignature)?;
        self.0
            .verify(message, &Signature::from_bytes(&bytes))
            .map_err(|_| KeyError::BadSignature)
    }

    /// Whether the raw 64-byte `signature` is this key's over `message`.
    pub fn verify_raw(&self, message: &[u8], signature: &[u8; 64]) -> Result<(), KeyError> {
        self.0
            .verify(message, &Signature::from_bytes(signature))
            .map_err(|_| KeyError::BadSignature)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", hex::encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let bytes = s
            .strip_prefix(PREFIX)
            .and_then(|h| hex::decode(h).ok())
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .ok_or(KeyError::BadPublicKey)?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| KeyError::BadPublicKey)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An Ed25519 signing key. `Debug` names only its public key.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new random key.
    pub fn generate() -> SecretKey {
        let mut seed: [u8; 32] = rand::random();
        let key = SecretKey(SigningKey::from_bytes(&seed));
        seed.zeroize();
        key
    }

    /// The key of a 32-byte seed in hex.
    pub fn from_seed_hex(text: &str) -> Result<SecretKey, KeyError> {
        let mut raw = hex::decode(text.trim()).map_err(|_| KeyError::BadSecretKey)?;
        let seed = <[u8; 32]>::try_from(raw.as_slice()).map_err(|_| KeyError::BadSecretKey);
        raw.zeroize();
        let mut seed = seed?;
        let key = SecretKey(SigningKey::from_bytes(&seed));
        seed.zeroize();
        Ok(key)
    }

    /// Reads a key file written by [`SecretKey::write`].
    pub fn load(path: &Path) -> Result<SecretKey, KeyError> {
        let mut text = std::fs::read_to_string(path).map_err(|e| KeyError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let key = SecretKey::from_seed_hex(&text);
        text.zeroize();
        key
    }

    /// Writes the seed to `path` (readable by its owner only) and the public key beside it
    /// as `{path}.pub`.
    pub fn write(&self, path: &Path) -> Result<(), KeyError> {
        let fail = |p: &Path, e: std::io::Error| KeyError::Write {
            path: p.display().to_string(),
            reason: e.to_string(),
        };
        let mut seed = hex::encode(self.0.to_bytes());
        seed.push('\n');
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(path).and_then(|mut f| {
            std::io::Write::write_all(&mut f, seed.as_bytes())?;
            f.sync_all()
        });
        seed.zeroize();
        written.map_err(|e| fail(path, e))?;
        let public = path.with_extension("pub");
        std::fs::write(&public, format!("{}\n", self.public())).map_err(|e| fail(&public, e))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The signature over `message`, base64url.
    pub fn sign(&self, message: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.sign_raw(message))
    }

    /// The raw 64-byte signature over `message`.
    pub fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(of {}, ***)", self.public().id())
    }
}

/// The public keys a device accepts signatures from, for one purpose. Rotating is adding the
/// new key, moving the signer over, then removing the old one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct TrustedKeys(Vec<PublicKey>);

impl TrustedKeys {
    pub fn new(keys: Vec<PublicKey>) -> Self {
        TrustedKeys(keys)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.0
    }

    /// Checks that `signature` by the key named `key` verifies over `message`.
    pub fn verify(&self, message: &[u8], key: &KeyId, signature: &str) -> Result<(), KeyError> {
        let signer = self
            .0
            .iter()
            .find(|k| k.id() == *key)
            .ok_or_else(|| KeyError::UntrustedKey(key.to_string()))?;
        signer.verify(message, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_sign_and_verify() {
        let key = SecretKey::generate();
        let public: PublicKey = key.public().to_string().parse().unwrap();
        assert_eq!(public, key.public());
        let sig = key.sign(b"message");
        assert_eq!(public.verify(b"message", &sig), Ok(()));
        assert_eq!(public.verify(b"massage", &sig), Err(KeyError::BadSignature));
        assert_eq!(
            public.verify(b"message", "!!"),
            Err(KeyError::GarbledSignature)
        );
        let trusted = TrustedKeys::new(vec![public]);
        assert_eq!(trusted.verify(b"message", &public.id(), &sig), Ok(()));
        let other = SecretKey::generate();
        assert!(matches!(
            trusted.verify(b"message", &other.public().id(), &other.sign(b"message")),
            Err(KeyError::UntrustedKey(_))
        ));
    }

    #[test]
    fn secret_keys_never_print_and_files_are_private() {
        let key = SecretKey::generate();
        let seed = hex::encode(key.0.to_bytes());
        assert!(!format!("{key:?}").contains(&seed[..16]));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ack.key");
        key.write(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "readable by others: {mode:o}");
        }
        let loaded = SecretKey::load(&path).unwrap();
        assert_eq!(loaded.public(), key.public());
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        assert_eq!(public.trim(), key.public().to_string());
        assert!(
            key.write(&path).is_err(),
            "an existing key is never overwritten"
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        for bad in [
            "",
            "ed25519:",
            "ed25519:zz",
            "rsa:00",
            &format!("ed25519:{}", "0".repeat(62)),
        ] {
            assert_eq!(
                bad.parse::<PublicKey>(),
                Err(KeyError::BadPublicKey),
                "{bad:?}"
            );
        }
        assert!(SecretKey::from_seed_hex("0011").is_err());
    }
}
