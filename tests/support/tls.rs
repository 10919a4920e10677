//! Certificates made in the test (rcgen): a CA, a certificate for 127.0.0.1 and
//! localhost that serves both as a server's and as a client's, and a stranger's client
//! certificate signed by another CA. Plus the ports whose nodes speak only TLS, so
//! that the harness's own connections and `redis-cli` calls to them use it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// PEM files in a temp dir that lives as long as this value.
#[derive(Debug)]
pub struct TlsFiles {
    dir: tempfile::TempDir,
    /// The CA that signed `cert`.
    pub ca: PathBuf,
    /// For `127.0.0.1` and `localhost`, server and client use.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Signed by another CA, unknown to anyone configured with `ca`.
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
}

impl TlsFiles {
    /// A fresh CA and certificates.
    pub fn generate() -> TlsFiles {
        let dir = tempfile::Builder::new()
            .prefix("slotgate-tls-")
            .tempdir()
            .expect("temp dir for certificates");
        let (ca, ca_key) = make_ca("slotgate test CA");
        let (cert, key) = make_leaf("slotgate test", &ca, &ca_key);
        let (other_ca, other_key) = make_ca("some other CA");
        let (stranger, stranger_key) = make_leaf("stranger", &other_ca, &other_key);
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write a PEM file");
            path
        };
        TlsFiles {
            ca: write("ca.pem", &ca.pem()),
            cert: write("cert.pem", &cert.pem()),
            key: write("key.pem", &key.serialize_pem()),
            stranger_cert: write("stranger.pem", &stranger.pem()),
            stranger_key: write("stranger-key.pem", &stranger_key.serialize_pem()),
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `path` as a string for configs and command lines.
    pub fn s(path: &Path) -> String {
        path.display().to_string()
    }

    /// What the `redis` crate needs to reach a TLS server with these files.
    pub fn redis_certs(&self, client_cert: bool) -> redis::TlsCertificates {
        let read = |p: &Path| std::fs::read(p).expect("read a PEM file");
        redis::TlsCertificates {
            client_tls: client_cert.then(|| redis::ClientTlsConfig {
                client_cert: read(&self.cert),
                client_key: read(&self.key),
            }),
            root_cert: Some(read(&self.ca)),
        }
    }

    /// `redis-cli` arguments for TLS with these files (and our client certificate).
    pub fn cli_args(&self) -> Vec<String> {
        vec![
            "--tls".into(),
            "--cacert".into(),
            Self::s(&self.ca),
            "--cert".into(),
            Self::s(&self.cert),
            "--key".into(),
            Self::s(&self.key),
        ]
    }
}

fn make_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("self-signed CA");
    (cert, key)
}

fn make_leaf(
    name: &str,
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().expect("leaf key");
    let cert = params
        .signed_by(&key, ca, ca_key)
        .expect("leaf signed by the CA");
    (cert, key)
}

/// Ports of nodes that speak only TLS, with the files to reach them (the CA and our
/// client certificate): the harness's connections and `redis-cli` calls look here.
static TLS_PORTS: Mutex<Option<HashMap<u16, TlsPeer>>> = Mutex::new(None);

/// How to reach one TLS-only node.
#[derive(Clone, Debug)]
pub struct TlsPeer {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsPeer {
    pub fn redis_certs(&self) -> redis::TlsCertificates {
        let read = |p: &Path| std::fs::read(p).expect("read a PEM file");
        redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: read(&self.cert),
                client_key: read(&self.key),
            }),
            root_cert: Some(read(&self.ca)),
        }
    }

    pub fn cli_args(&self) -> Vec<String> {
        vec![
            "--tls".into(),
            "--cacert".into(),
            TlsFiles::s(&self.ca),
            "--cert".into(),
            TlsFiles::s(&self.cert),
            "--key".into(),
            TlsFiles::s(&self.key),
        ]
    }
}

/// From now on the node on `port` is reached with TLS.
pub fn mark_tls_port(port: u16, peer: TlsPeer) {
    let mut ports = TLS_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    ports.get_or_insert_with(HashMap::new).insert(port, peer);
}

/// How to reach the node on `port` if it speaks TLS.
pub fn tls_port(port: u16) -> Option<TlsPeer> {
    let ports = TLS_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    ports.as_ref()?.get(&port).cloned()
}
