//! A throw-away PKI made with rcgen: a CA, a server certificate for loopback, and client
//! certificates whose common name is the client's identity.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// PEM files of one identity: the CA to trust, and the identity's certificate and key.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA in `dir` with a server certificate (`server.pem`, `server.key`) for 127.0.0.1 and
/// localhost.
pub struct TestPki {
    pub dir: PathBuf,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

impl TestPki {
    pub fn new(dir: &Path) -> TestPki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Caidan test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write ca.pem");
        let pki = TestPki {
            dir: dir.to_owned(),
            ca_params,
            ca_key,
        };
        pki.issue("server", &["127.0.0.1", "localhost"]);
        pki
    }

    /// Writes `{name}.pem` and `{name}.key`, common name `name`, valid for `sans`.
    pub fn issue(&self, name: &str, sans: &[&str]) -> TlsPaths {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("certificate params");
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).expect("certificate");
        let id = self.identity(name);
        std::fs::write(&id.cert, cert.pem()).expect("write pem");
        std::fs::write(&id.key, key.serialize_pem()).expect("write key");
        id
    }

    /// Files of an identity issued earlier (a `/` in the name becomes `_` in file names).
    pub fn identity(&self, name: &str) -> TlsPaths {
        let file = name.replace('/', "_");
        TlsPaths {
            ca: self.ca(),
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Mosquitto TLS listener lines (after `listener`).
    pub fn mosquitto_tls(&self, require_certificate: bool) -> String {
        format!(
            "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {require_certificate}\n",
            self.ca().display(),
            self.dir.join("server.pem").display(),
            self.dir.join("server.key").display()
        )
    }
}
