//! Broker addresses and TLS: turns `mqtt://host:port` or `mqtts://host:port` plus certificate
//! files into rumqttc [`MqttOptions`]. Shared by the device uplink and the data bank.
//!
//! URL form: `mqtt[s]://[user[:password]@]host:port[?ca=FILE&cert=FILE&key=FILE]`. The port is
//! required (no silent default that could reach an unrelated local broker). A [`TlsFiles`]
//! field given in code wins over the same query key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;

/// Largest MQTT packet accepted or sent by default: room for a 1 MiB batch plus headers.
pub const DEFAULT_MAX_PACKET_BYTES: usize = 1024 * 1024 + 16 * 1024;

/// What went wrong turning a broker URL and TLS files into connection options.
#[derive(Debug, Error)]
pub enum TransportError {
    #[error("broker URL {url:?}: scheme must be mqtt:// or mqtts://")]
    BadScheme { url: String },
    #[error("broker URL {url:?}: missing host")]
    MissingHost { url: String },
    #[error("broker URL {url:?}: missing port (write host:port)")]
    MissingPort { url: String },
    #[error("broker URL {url:?}: bad port {port:?}")]
    BadPort { url: String, port: String },
    #[error("broker URL {url:?}: unknown option {key:?} (known: ca, cert, key)")]
    UnknownOption { url: String, key: String },
    #[error("broker URL {url:?}: {reason}")]
    Malformed { url: String, reason: &'static str },
    #[error("mqtts:// needs a CA file (option ca=FILE)")]
    MissingCa,
    #[error("TLS files given for plaintext mqtt://; use mqtts://")]
    TlsOnPlaintext,
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
    Tls(#[from] rustls::Error),
}

/// Plain TCP or TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Mqtt,
    Mqtts,
}

/// A parsed broker URL.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// TLS files named in the query string.
    pub tls: TlsFiles,
}

impl fmt::Debug for BrokerUrl {
    // Never print the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerUrl")
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
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
    fn is_empty(&self) -> bool {
        self.ca.is_none() && self.client_cert.is_none() && self.client_key.is_none()
    }

    /// Fields set in `self` win over `other`.
    fn or(self, other: TlsFiles) -> TlsFiles {
        TlsFiles {
            ca: self.ca.or(other.ca),
            client_cert: self.client_cert.or(other.client_cert),
            client_key: self.client_key.or(other.client_key),
        }
    }
}

impl FromStr for BrokerUrl {
    type Err = TransportError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let own = || url.to_owned();
        let (scheme, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (Scheme::Mqtts, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (Scheme::Mqtt, r)
        } else {
            return Err(TransportError::BadScheme { url: own() });
        };
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains('/') {
            return Err(TransportError::Malformed {
                url: own(),
                reason: "no path allowed after host:port",
            });
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (Some(user.to_owned()), Some(pass.to_owned())),
                None => (Some(u.to_owned()), None),
            },
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| {
            if hostport.is_empty() || hostport.starts_with(':') {
                TransportError::MissingHost { url: own() }
            } else {
                TransportError::MissingPort { url: own() }
            }
        })?;
        if host.is_empty() {
            return Err(TransportError::MissingHost { url: own() });
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => {
                return Err(TransportError::BadPort {
                    url: own(),
                    port: port.to_owned(),
                });
            }
        };
        let mut tls = TlsFiles::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                "ca" => &mut tls.ca,
                "cert" => &mut tls.client_cert,
                "key" => &mut tls.client_key,
                _ => {
                    return Err(TransportError::UnknownOption {
                        url: own(),
                        key: key.to_owned(),
                    });
                }
            };
            if value.is_empty() {
                return Err(TransportError::Malformed {
                    url: own(),
                    reason: "empty option value",
                });
            }
            *slot = Some(PathBuf::from(value));
        }
        Ok(BrokerUrl {
            scheme,
            host: host.to_owned(),
            port,
            username,
            password,
            tls,
        })
    }
}

/// `host:port` or `[v6]:port`; `None` when the port part is absent.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host, port))
}

/// Builds connection options for `url` with `client_id`. `tls` adds to (and overrides) the
/// TLS files named in the URL. Keep-alive is 30 s and packets up to
/// [`DEFAULT_MAX_PACKET_BYTES`] are allowed; callers may adjust the returned options.
pub fn mqtt_options(
    url: &str,
    client_id: &str,
    tls: &TlsFiles,
) -> Result<MqttOptions, TransportError> {
    let parsed: BrokerUrl = url.parse()?;
    parsed.mqtt_options(client_id, tls)
}

impl BrokerUrl {
    /// See [`mqtt_options`].
    pub fn mqtt_options(
        &self,
        client_id: &str,
        tls: &TlsFiles,
    ) -> Result<MqttOptions, TransportError> {
        let files = tls.clone().or(self.tls.clone());
        let mut opts = MqttOptions::new(client_id, self.host.clone(), self.port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(DEFAULT_MAX_PACKET_BYTES, DEFAULT_MAX_PACKET_BYTES);
        if let Some(user) = &self.username {
            opts.set_credentials(user.clone(), self.password.clone().unwrap_or_default());
        }
        match self.scheme {
            Scheme::Mqtt if !files.is_empty() => return Err(TransportError::TlsOnPlaintext),
            Scheme::Mqtt => {}
            Scheme::Mqtts => {
                let config = client_config(&files)?;
                opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(config))));
            }
        }
        Ok(opts)
    }
}

/// A rustls client configuration trusting only the CA in `files.ca`, presenting the client
/// identity when both certificate and key are given. Uses the ring provider explicitly so it
/// works whichever other rustls providers are compiled in.
pub fn client_config(files: &TlsFiles) -> Result<rustls::ClientConfig, TransportError> {
    let ca = files.ca.as_deref().ok_or(TransportError::MissingCa)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots.add(cert).map_err(|source| TransportError::BadCa {
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
        _ => return Err(TransportError::HalfClientIdentity),
    };
    Ok(config)
}

fn read_file(path: &Path) -> Result<Vec<u8>, TransportError> {
    std::fs::read(path).map_err(|source| TransportError::ReadFile {
        path: path.to_owned(),
        source,
    })
}

/// All certificates of a PEM file; at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let bytes = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TransportError::BadPem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TransportError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TransportError> {
    let bytes = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TransportError::BadPem {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_tls_urls() {
        let u: BrokerUrl = "mqtt://127.0.0.1:11883".parse().unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port),
            (Scheme::Mqtt, "127.0.0.1", 11883)
        );
        let u: BrokerUrl = "mqtts://dev:pw@broker.example:8884/?ca=/x/ca.pem&cert=c.pem&key=k.pem"
            .parse()
            .unwrap();
        assert_eq!(u.scheme, Scheme::Mqtts);
        assert_eq!(u.username.as_deref(), Some("dev"));
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.tls.ca.as_deref(), Some(Path::new("/x/ca.pem")));
        assert_eq!(u.tls.client_key.as_deref(), Some(Path::new("k.pem")));
        assert!(!format!("{u:?}").contains("pw"));
        let u: BrokerUrl = "mqtt://[::1]:1999".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1999));
    }

    #[test]
    fn rejects_bad_urls() {
        let err = |s: &str| s.parse::<BrokerUrl>().unwrap_err();
        assert!(matches!(err("tcp://h:1"), TransportError::BadScheme { .. }));
        assert!(matches!(
            err("mqtt://host"),
            TransportError::MissingPort { .. }
        ));
        assert!(matches!(
            err("mqtt://:1234"),
            TransportError::MissingHost { .. }
        ));
        assert!(matches!(err("mqtt://h:0"), TransportError::BadPort { .. }));
        assert!(matches!(
            err("mqtt://h:99999"),
            TransportError::BadPort { .. }
        ));
        assert!(matches!(
            err("mqtt://h:1/x"),
            TransportError::Malformed { .. }
        ));
        assert!(matches!(
            err("mqtt://h:1?foo=1"),
            TransportError::UnknownOption { .. }
        ));
    }

    #[test]
    fn tls_file_errors_are_typed() {
        let none = TlsFiles::default();
        assert!(matches!(
            mqtt_options("mqtts://h:1", "c", &none),
            Err(TransportError::MissingCa)
        ));
        assert!(matches!(
            mqtt_options("mqtt://h:1?ca=/nope", "c", &none),
            Err(TransportError::TlsOnPlaintext)
        ));
        assert!(matches!(
            mqtt_options("mqtts://h:1?ca=/definitely/missing.pem", "c", &none),
            Err(TransportError::ReadFile { .. })
        ));
        let dir = std::env::temp_dir().join(format!("caidan-transport-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a pem at all\n").unwrap();
        let files = TlsFiles {
            ca: Some(garbage.clone()),
            ..TlsFiles::default()
        };
        assert!(matches!(
            mqtt_options("mqtts://h:1", "c", &files),
            Err(TransportError::NoCertificate { .. })
        ));
        std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\n%%%%\n").unwrap();
        assert!(matches!(
            mqtt_options("mqtts://h:1", "c", &files),
            Err(TransportError::BadPem { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn plaintext_options() {
        let o = mqtt_options(
            "mqtt://u:p@localhost:2883",
            "caidan-demo-k1",
            &TlsFiles::default(),
        )
        .unwrap();
        assert_eq!(o.broker_address(), ("localhost".to_owned(), 2883));
        assert_eq!(o.client_id(), "caidan-demo-k1");
    }
}
