//! `weir serve --tls` without a configured certificate: a fresh self-signed
//! certificate for localhost (`localhost`, `127.0.0.1`, `::1`), made in
//! memory at start, identified to the operator by its SHA-256 fingerprint.
//!
//! The pair lives only in memory: `weir serve` hands
//! [`SelfSigned::certified_key`] to its listener through
//! [`super::certs::MemoryCerts`], so no file holding the key is ever written
//! (and none can outlive a killed process). The private key is never
//! printed: `Debug` leaves it out.

use std::fmt;
use std::sync::Arc;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

/// The names the certificate is valid for.
pub const NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

#[derive(Debug, thiserror::Error)]
pub enum SelfSignedError {
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot use the self-signed certificate: {0}")]
    Load(#[from] rustls::Error),
}

/// A certificate and its private key, both in memory.
pub struct SelfSigned {
    cert_der: CertificateDer<'static>,
    key: KeyPair,
}

impl fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfSigned")
            .field("names", &NAMES)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl SelfSigned {
    /// A new key pair (ECDSA P-256) and a certificate for [`NAMES`] signed by it.
    pub fn generate() -> Result<SelfSigned, SelfSignedError> {
        let mut params = CertificateParams::new(NAMES.map(str::to_owned).to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "weir self-signed (localhost)");
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(SelfSigned {
            cert_der: cert.der().clone(),
            key,
        })
    }

    /// The certificate, DER-encoded.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// SHA-256 of the DER certificate, as `AB:CD:...` (32 uppercase pairs).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    /// The pair as rustls serves it.
    pub fn certified_key(&self) -> Result<Arc<CertifiedKey>, SelfSignedError> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()));
        let certified =
            CertifiedKey::from_der(vec![self.cert_der.clone()], key, &super::certs::provider())?;
        Ok(Arc::new(certified))
    }
}

/// SHA-256 of `der`, as uppercase hex pairs joined by `:`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let pairs: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    pairs.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_32_uppercase_pairs() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let fp = fingerprint(b"abc");
        assert_eq!(
            fp,
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
             B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn key_matches_certificate_and_names_are_covered() {
        let ss = SelfSigned::generate().unwrap();
        ss.certified_key().unwrap();
        let parsed = rustls::server::ParsedCertificate::try_from(ss.cert_der()).unwrap();
        for name in NAMES {
            let name = rustls::pki_types::ServerName::try_from(name).unwrap();
            rustls::client::verify_server_name(&parsed, &name).unwrap();
        }
        assert!(!format!("{ss:?}").contains("PRIVATE"));
    }

    #[test]
    fn every_generation_is_a_new_key() {
        let (a, b) = (
            SelfSigned::generate().unwrap(),
            SelfSigned::generate().unwrap(),
        );
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
