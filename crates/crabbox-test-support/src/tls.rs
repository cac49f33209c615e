//! A throwaway certificate authority for fixtures that serve HTTPS on 127.0.0.1.
//!
//! Some clients refuse plain HTTP outright (Microsoft's `azure_identity` takes only an
//! `https://` authority host), so a fake of such a service has to speak TLS with a certificate
//! the client can be told to trust. [`TestCa`] makes a CA and a server certificate for
//! `127.0.0.1` and `localhost` signed by it, writes the CA certificate where a product process
//! finds it through `SSL_CERT_FILE`, and gives the fixture a `rustls` server configuration.
//!
//! Everything uses `ring`, named explicitly, so no process-wide default crypto provider has to
//! be installed and nothing pulls in aws-lc (docs/PERFORMANCE.md).

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

/// A CA made for one fixture, and a server certificate for `127.0.0.1` and `localhost` that
/// it signed. The CA's key is forgotten once the server certificate is signed: nothing else
/// can ever be trusted through it. Dropping the value removes the CA file.
pub struct TestCa {
    ca_file: tempfile::TempPath,
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa")
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// A new CA and server certificate (ECDSA P-256, valid from 1975 to 4096, so no clock
    /// matters), with the CA certificate written to a PEM file in the temp dir, readable by
    /// all (a certificate is public).
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().expect("a key for the test CA");
        let mut ca = CertificateParams::default();
        ca.distinguished_name
            .push(DnType::CommonName, "Crabbox test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_pem = ca
            .self_signed(&ca_key)
            .expect("the test CA's certificate")
            .pem();

        let server_key = KeyPair::generate().expect("a key for the test server");
        let mut server = CertificateParams::default();
        server
            .distinguished_name
            .push(DnType::CommonName, "Crabbox test server");
        server.subject_alt_names = vec![
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::DnsName("localhost".try_into().expect("a DNS name")),
        ];
        server.is_ca = IsCa::ExplicitNoCa;
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = Issuer::new(ca, ca_key);
        let server_cert = server
            .signed_by(&server_key, &issuer)
            .expect("the test server's certificate");

        let config = server_config(
            server_cert.der().clone(),
            PrivatePkcs8KeyDer::from(server_key.serialize_der()),
        );

        let mut file = tempfile::Builder::new()
            .prefix("cbx-test-ca")
            .suffix(".pem")
            .tempfile()
            .expect("a temp file for the test CA");
        // Set after creation, as the umask would narrow a mode given to open.
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644))
            .and_then(|()| file.write_all(ca_pem.as_bytes()))
            .and_then(|()| file.flush())
            .expect("write the test CA's certificate");
        Self {
            ca_file: file.into_temp_path(),
            ca_pem,
            server: Arc::new(config),
        }
    }

    /// The CA certificate's PEM file: what a product process gets as `SSL_CERT_FILE`.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The CA certificate, PEM-encoded (for a client built in the test itself).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The server side: the certificate for `127.0.0.1` and `localhost`, TLS 1.2 and 1.3,
    /// HTTP/1.1 only (ALPN `http/1.1`), no client certificates.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.server)
    }
}

fn server_config(
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key.into())
        .expect("the test server's key matches its certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_file_holds_the_ca_certificate_and_goes_with_the_value() {
        let ca = TestCa::new();
        let written = std::fs::read_to_string(ca.ca_file()).unwrap();
        assert_eq!(written, ca.ca_pem());
        assert!(written.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(written.matches("BEGIN CERTIFICATE").count(), 1);
        let mode = std::fs::metadata(ca.ca_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        let file = ca.ca_file().to_owned();
        drop(ca);
        assert!(!file.exists());
    }

    #[test]
    fn every_ca_is_its_own() {
        assert_ne!(TestCa::new().ca_pem(), TestCa::new().ca_pem());
    }

    #[test]
    fn the_server_speaks_http1_only() {
        assert_eq!(
            TestCa::new().server_config().alpn_protocols,
            vec![b"http/1.1".to_vec()]
        );
    }
}
