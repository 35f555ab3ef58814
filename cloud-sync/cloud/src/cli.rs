//! Command-line arguments more than one `caidan-cloud` subcommand takes.

use std::path::PathBuf;

use caidan_sync::tls::TlsFiles;

/// TLS files for an `mqtts://` broker, beside (and over) those named in the URL.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MqttTlsArgs {
    /// CA certificate (PEM) the broker's certificate must chain to, for mqtts://.
    #[arg(long, value_name = "PEM")]
    pub mqtt_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, value_name = "PEM", requires = "mqtt_key")]
    pub mqtt_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long, value_name = "PEM", requires = "mqtt_cert")]
    pub mqtt_key: Option<PathBuf>,
}

impl MqttTlsArgs {
    pub fn files(self) -> TlsFiles {
        TlsFiles {
            ca: self.mqtt_ca,
            client_cert: self.mqtt_cert,
            client_key: self.mqtt_key,
        }
    }
}
