//! Broker addresses: `mqtt[s]://[user[:password]@]host:port[?ca=FILE&cert=FILE&key=FILE]`,
//! parsed once into a [`BrokerUrl`] that the agent and the data bank both connect with.
//!
//! The port is required (no silent default that could reach an unrelated local broker).
//! User and password may be percent-encoded. A password can also come from the environment
//! ([`PASSWORD_ENV`]) so it never has to sit in a command line; either way it is a
//! [`Password`], which no `Debug` or `Display` prints.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use rumqttc::{MqttOptions, TlsConfiguration, Transport};

use crate::tls::{self, TlsError, TlsFiles};

/// Environment variable holding the broker password when the URL names a user but no
/// password.
pub const PASSWORD_ENV: &str = "CAIDAN_MQTT_PASSWORD";

/// Largest MQTT packet accepted or sent by default: room for a 1 MiB batch plus headers.
pub const DEFAULT_MAX_PACKET_BYTES: usize = 1024 * 1024 + 16 * 1024;

/// What is wrong with a broker URL, or with the TLS files it names.
#[derive(Debug, thiserror::Error)]
pub enum BrokerUrlError {
    #[error("broker URL {url}: scheme must be mqtt:// or mqtts://")]
    BadScheme { url: String },
    #[error("broker URL {url}: missing host")]
    MissingHost { url: String },
    #[error("broker URL {url}: missing port (write host:port)")]
    MissingPort { url: String },
    #[error("broker URL {url}: bad port {port:?}")]
    BadPort { url: String, port: String },
    #[error("broker URL {url}: unknown option {key:?} (known: ca, cert, key)")]
    UnknownOption { url: String, key: String },
    #[error("broker URL {url}: {reason}")]
    Malformed { url: String, reason: &'static str },
    #[error("TLS files given for plaintext mqtt://; use mqtts://")]
    TlsOnPlaintext,
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Plain TCP or TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Mqtt,
    Mqtts,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Mqtt => "mqtt",
            Scheme::Mqtts => "mqtts",
        }
    }
}

/// A broker password. Its `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(secret: impl Into<String>) -> Self {
        Password(secret.into())
    }

    /// The secret itself, for the MQTT CONNECT packet only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A parsed broker URL. `Debug` and `Display` never show the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Password>,
    /// TLS files named in the query string.
    pub tls: TlsFiles,
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.scheme.as_str())?;
        if let Some(user) = &self.username {
            write!(f, "{user}")?;
            if self.password.is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{}:{}", self.host, self.port)?;
        }
        let mut sep = '?';
        for (key, path) in [
            ("ca", &self.tls.ca),
            ("cert", &self.tls.client_cert),
            ("key", &self.tls.client_key),
        ] {
            if let Some(p) = path {
                write!(f, "{sep}{key}={}", p.display())?;
                sep = '&';
            }
        }
        Ok(())
    }
}

/// The URL as given, with any password replaced, for error messages.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let host = &rest[userinfo.len()..];
            format!("{scheme}://{user}:***{host}")
        }
        _ => url.to_owned(),
    }
}

fn decode(s: &str, url: &str) -> Result<String, BrokerUrlError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| BrokerUrlError::Malformed {
            url: redacted(url),
            reason: "user or password is not valid percent-encoded UTF-8",
        })
}

impl FromStr for BrokerUrl {
    type Err = BrokerUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let own = || redacted(url);
        let (scheme, rest) = if let Some(r) = url.strip_prefix("mqtts://") {
            (Scheme::Mqtts, r)
        } else if let Some(r) = url.strip_prefix("mqtt://") {
            (Scheme::Mqtt, r)
        } else {
            return Err(BrokerUrlError::BadScheme { url: own() });
        };
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains('/') {
            return Err(BrokerUrlError::Malformed {
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
                Some((user, pass)) => {
                    (Some(decode(user, url)?), Some(Password(decode(pass, url)?)))
                }
                None => (Some(decode(u, url)?), None),
            },
        };
        if username.as_deref() == Some("") {
            return Err(BrokerUrlError::Malformed {
                url: own(),
                reason: "empty user name",
            });
        }
        let (host, port) = split_host_port(hostport).ok_or_else(|| {
            if hostport.is_empty() || hostport.starts_with(':') {
                BrokerUrlError::MissingHost { url: own() }
            } else {
                BrokerUrlError::MissingPort { url: own() }
            }
        })?;
        if host.is_empty() {
            return Err(BrokerUrlError::MissingHost { url: own() });
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => {
                return Err(BrokerUrlError::BadPort {
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
                    return Err(BrokerUrlError::UnknownOption {
                        url: own(),
                        key: key.to_owned(),
                    });
                }
            };
            if value.is_empty() {
                return Err(BrokerUrlError::Malformed {
                    url: own(),
                    reason: "empty option value",
                });
            }
            *slot = Some(PathBuf::from(decode(value, url)?));
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

impl BrokerUrl {
    /// Parses `url`, taking the password from `lookup(PASSWORD_ENV)` when the URL names a
    /// user without one. Binaries pass `std::env::var`.
    pub fn parse_with(
        url: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<BrokerUrl, BrokerUrlError> {
        let mut parsed: BrokerUrl = url.parse()?;
        if parsed.username.is_some() && parsed.password.is_none() {
            parsed.password = lookup(PASSWORD_ENV).map(Password);
        }
        Ok(parsed)
    }

    /// [`BrokerUrl::parse_with`] reading the process environment.
    pub fn parse_env(url: &str) -> Result<BrokerUrl, BrokerUrlError> {
        BrokerUrl::parse_with(url, |k| std::env::var(k).ok())
    }

    /// Connection options for `client_id`. `tls` adds to (and overrides) the TLS files named
    /// in the URL. Keep-alive is 30 s and packets up to [`DEFAULT_MAX_PACKET_BYTES`] are
    /// allowed; callers may adjust the returned options.
    pub fn mqtt_options(
        &self,
        client_id: &str,
        tls: &TlsFiles,
    ) -> Result<MqttOptions, BrokerUrlError> {
        let files = tls.clone().or(self.tls.clone());
        let mut opts = MqttOptions::new(client_id, self.host.clone(), self.port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_max_packet_size(DEFAULT_MAX_PACKET_BYTES, DEFAULT_MAX_PACKET_BYTES);
        if let Some(user) = &self.username {
            let password = self.password.as_ref().map_or("", Password::expose);
            opts.set_credentials(user.clone(), password);
        }
        match self.scheme {
            Scheme::Mqtt if !files.is_empty() => return Err(BrokerUrlError::TlsOnPlaintext),
            Scheme::Mqtt => {}
            Scheme::Mqtts => {
                let config = tls::client_config(&files)?;
                opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(
                    std::sync::Arc::new(config),
                )));
            }
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
        assert_eq!(u.password.as_ref().map(Password::expose), Some("pw"));
        assert_eq!(u.tls.ca.as_deref(), Some(Path::new("/x/ca.pem")));
        assert_eq!(u.tls.client_key.as_deref(), Some(Path::new("k.pem")));
        let u: BrokerUrl = "mqtt://[::1]:1999".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1999));
        let u: BrokerUrl = "mqtt://a%40b:p%3Aw%40rd@h:1".parse().unwrap();
        assert_eq!(u.username.as_deref(), Some("a@b"));
        assert_eq!(u.password.unwrap().expose(), "p:w@rd");
    }

    #[test]
    fn the_password_is_never_printed() {
        let u: BrokerUrl = "mqtts://dev:s3cret-pw@h:8884?ca=/x/ca.pem".parse().unwrap();
        for text in [
            format!("{u}"),
            format!("{u:?}"),
            format!("{:?}", u.password),
        ] {
            assert!(!text.contains("s3cret"), "{text}");
        }
        assert_eq!(u.to_string(), "mqtts://dev:***@h:8884?ca=/x/ca.pem");
        let err = "mqtt://dev:s3cret-pw@h".parse::<BrokerUrl>().unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(err.to_string().contains("dev:***@h"), "{err}");
    }

    #[test]
    fn password_from_the_environment_when_the_url_has_none() {
        let env = |k: &str| (k == PASSWORD_ENV).then(|| "from-env".to_owned());
        let u = BrokerUrl::parse_with("mqtt://bank@h:1", env).unwrap();
        assert_eq!(u.password.unwrap().expose(), "from-env");
        let u = BrokerUrl::parse_with("mqtt://bank:inline@h:1", env).unwrap();
        assert_eq!(u.password.unwrap().expose(), "inline", "the URL wins");
        let u = BrokerUrl::parse_with("mqtt://h:1", env).unwrap();
        assert!(u.password.is_none(), "no user, no password");
    }

    #[test]
    fn rejects_bad_urls() {
        let err = |s: &str| s.parse::<BrokerUrl>().unwrap_err();
        assert!(matches!(err("tcp://h:1"), BrokerUrlError::BadScheme { .. }));
        assert!(matches!(
            err("mqtt://host"),
            BrokerUrlError::MissingPort { .. }
        ));
        assert!(matches!(
            err("mqtt://:1234"),
            BrokerUrlError::MissingHost { .. }
        ));
        assert!(matches!(err("mqtt://h:0"), BrokerUrlError::BadPort { .. }));
        assert!(matches!(
            err("mqtt://h:99999"),
            BrokerUrlError::BadPort { .. }
        ));
        assert!(matches!(
            err("mqtt://h:1/x"),
            BrokerUrlError::Malformed { .. }
        ));
        assert!(matches!(
            err("mqtt://h:1?foo=1"),
            BrokerUrlError::UnknownOption { .. }
        ));
        assert!(matches!(
            err("mqtt://:pw@h:1"),
            BrokerUrlError::Malformed { .. }
        ));
    }

    #[test]
    fn tls_errors_are_typed() {
        let none = TlsFiles::default();
        let opts = |url: &str| url.parse::<BrokerUrl>().unwrap().mqtt_options("c", &none);
        assert!(matches!(
            opts("mqtts://h:1"),
            Err(BrokerUrlError::Tls(TlsError::MissingCa))
        ));
        assert!(matches!(
            opts("mqtt://h:1?ca=/nope"),
            Err(BrokerUrlError::TlsOnPlaintext)
        ));
        assert!(matches!(
            opts("mqtts://h:1?ca=/definitely/missing.pem"),
            Err(BrokerUrlError::Tls(TlsError::ReadFile { .. }))
        ));
    }

    #[test]
    fn plaintext_options_carry_the_credentials() {
        let u: BrokerUrl = "mqtt://u:p@localhost:2883".parse().unwrap();
        let o = u
            .mqtt_options("caidan-demo-k1", &TlsFiles::default())
            .unwrap();
        assert_eq!(o.broker_address(), ("localhost".to_owned(), 2883));
        assert_eq!(o.client_id(), "caidan-demo-k1");
        let login = o.credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("u", "p")
        );
    }
}
