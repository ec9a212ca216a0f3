//! Loading certificate chains and private keys from PEM files, and checking
//! that a key belongs to its certificate; and [`MemoryCerts`], certificates
//! a caller hands to the compiled config without any file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no PEM private key: {reason}", path.display())]
    NoKey { path: PathBuf, reason: String },
    #[error("key {} does not match certificate {}: {reason}", key.display(), cert.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// The process-wide crypto provider (ring by default, see Cargo features).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(not(feature = "aws-lc-rs"))]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Loads a PEM chain and key and checks that they belong together.
pub fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(CertError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| CertError::NoKey {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let mismatch = |reason: String| CertError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason,
    };
    CertifiedKey::from_der(chain, private, &provider())
        .map(Arc::new)
        .map_err(|e| mismatch(e.to_string()))
}

/// Certificates that live only in memory, never in a file, by the name of
/// the TLS listener that serves them: how `weir serve --tls` serves its
/// self-signed certificate. The config schema names certificates by file
/// and knows nothing of these: a [`crate::config::Document`] carries them
/// beside its config, validation counts them among a listener's
/// certificates, and compilation puts them after the ones loaded from
/// files. Not being in the schema, they never show in `/config`.
#[derive(Debug, Clone, Default)]
pub struct MemoryCerts {
    by_listener: BTreeMap<String, Vec<Arc<CertifiedKey>>>,
}

impl MemoryCerts {
    /// Adds `cert` to those `listener` serves.
    pub fn add(&mut self, listener: &str, cert: Arc<CertifiedKey>) {
        self.by_listener
            .entry(listener.to_owned())
            .or_default()
            .push(cert);
    }

    /// The certificates `listener` serves from memory, in the order added.
    pub fn of(&self, listener: &str) -> &[Arc<CertifiedKey>] {
        self.by_listener.get(listener).map_or(&[], Vec::as_slice)
    }

    /// The listeners that have certificates here.
    pub fn listeners(&self) -> impl Iterator<Item = &str> {
        self.by_listener.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::{self, ConfigError, Format};
    use crate::tls::selfsigned::SelfSigned;

    /// A TLS listener `web` with no certificate files, and a route to a site.
    fn text(tls: bool) -> String {
        let tls = if tls {
            "[listeners.tls]\ncerts = []\n"
        } else {
            ""
        };
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n\
             [[listeners]]\nname = \"web\"\nbind = [\"127.0.0.1:0\"]\n{tls}\
             [[routes]]\npath = \"/\"\nbackends = [{{ site = \"s\" }}]\n\
             [sites.s]\nroot = \".\"\n"
        )
    }

    fn load(text: &str, memory: MemoryCerts) -> Result<config::Document, ConfigError> {
        config::load_str_with_certs(
            text,
            Path::new("t.toml"),
            Format::Toml,
            PathBuf::from("."),
            memory,
        )
    }

    fn one(listener: &str) -> (MemoryCerts, Arc<CertifiedKey>) {
        let cert = SelfSigned::generate().unwrap().certified_key().unwrap();
        let mut memory = MemoryCerts::default();
        memory.add(listener, cert.clone());
        (memory, cert)
    }

    #[test]
    fn memory_certs_are_what_a_tls_listener_serves() {
        let (memory, cert) = one("web");
        let doc = load(&text(true), memory).unwrap();
        assert!(
            doc.config.listeners[0]
                .tls
                .as_ref()
                .unwrap()
                .certs
                .is_empty()
        );
        let metrics = crate::telemetry::metrics::Metrics::new(
            &mut prometheus_client::registry::Registry::default(),
        );
        let snapshot = config::compile(&doc, 1, &metrics, None).unwrap();
        let tls = snapshot.listener("web").unwrap().tls.as_ref().unwrap();
        assert_eq!(tls.certs.len(), 1);
        assert!(Arc::ptr_eq(&tls.certs[0], &cert));
        // Key material is not in the schema, so not in `/config` either.
        assert!(!snapshot.effective.to_string().contains("PRIVATE"));
    }

    #[test]
    fn a_tls_listener_still_needs_a_certificate_somewhere() {
        let err = load(&text(true), MemoryCerts::default()).unwrap_err();
        assert!(
            err.lines()
                .iter()
                .any(|l| l.contains("listeners[0].tls.certs") && l.contains("at least one")),
            "{:?}",
            err.lines()
        );
        // Certificates for some other listener do not count.
        let (memory, _) = one("other");
        assert!(load(&text(true), memory).is_err());
    }

    #[test]
    fn memory_certs_for_a_listener_without_tls_are_refused() {
        for listener in ["web", "nope"] {
            let (memory, _) = one(listener);
            let err = load(&text(false), memory).unwrap_err();
            assert!(
                err.lines()
                    .iter()
                    .any(|l| l.contains(&format!("{listener:?}")) && l.contains("[listeners.tls]")),
                "{:?}",
                err.lines()
            );
        }
    }
}
