//! TLS for broker connections: rustls with the configured CA as the only trust anchor and an
//! optional client identity for mutual TLS. Shared by the device uplink and the data bank.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What is wrong with the TLS files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("mqtts:// needs a CA file (option ca=FILE)")]
    MissingCa,
    #[error("client certificate and key must be given together")]
    HalfClientIdentity,
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: bad PEM: {reason}")]
    BadPem { path: PathBuf, reason: String },
    #[error("{path}: no certificate found")]
    NoCertificate { path: PathBuf },
    #[error("{path}: rejected as a trust anchor: {source}")]
    BadCa {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("TLS configuration rejected: {0}")]
    Config(#[from] rustls::Error),
}

/// PEM files for TLS: the CA that is the only trusted root, and an optional client identity
/// for mutual TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.client_cert.is_none() && self.client_key.is_none()
    }

    /// Fields set in `self` win over `other`.
    pub fn or(self, other: TlsFiles) -> TlsFiles {
        TlsFiles {
            ca: self.ca.or(other.ca),
            client_cert: self.client_cert.or(other.client_cert),
            client_key: self.client_key.or(other.client_key),
        }
    }
}

/// A rustls client configuration trusting only the CA in `files.ca`, presenting the client
/// identity when both certificate and key are given. Uses the ring provider explicitly so it
/// works whichever other rustls providers are compiled in.
pub fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, TlsError> {
    let ca = files.ca.as_deref().ok_or(TlsError::MissingCa)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots.add(cert).map_err(|source| TlsError::BadCa {
            path: ca.to_owned(),
            source,
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match (&files.client_cert, &files.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            builder.with_client_auth_cert(read_certs(cert)?, read_key(key)?)?
        }
        _ => return Err(TlsError::HalfClientIdentity),
    };
    Ok(config)
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::ReadFile {
        path: path.to_owned(),
        source,
    })
}

/// All certificates of a PEM file; at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::BadPem {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a pem at all\n").unwrap();
        let files = TlsFiles {
            ca: Some(garbage.clone()),
            ..TlsFiles::default()
        };
        assert!(matches!(
            client_config(&files),
            Err(TlsError::NoCertificate { .. })
        ));
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\n%%%%\n").unwrap();
        assert!(matches!(
            client_config(&files),
            Err(TlsError::BadPem { .. })
        ));
        let half = TlsFiles {
            client_cert: Some(garbage.clone()),
            ..files
        };
        assert!(matches!(
            client_config(&half),
            Err(TlsError::BadPem { .. } | TlsError::HalfClientIdentity)
        ));
    }
}
