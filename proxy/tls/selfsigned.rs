//! `weir serve --tls` without a configured certificate: a fresh self-signed
//! certificate for localhost (`localhost`, `127.0.0.1`, `::1`), made in
//! memory at start, identified to the operator by its SHA-256 fingerprint.
//!
//! The config schema names certificates by file, so [`SelfSigned::write_private`]
//! puts the PEM pair in a private directory (mode 0700, files 0600, created
//! fresh under the system temporary directory) that is removed again when its
//! guard drops. The private key is never printed: `Debug` leaves it out.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
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
    #[error("cannot write the self-signed certificate to a private temporary directory: {0}")]
    Write(#[from] std::io::Error),
}

/// A certificate and its private key, both in memory.
pub struct SelfSigned {
    cert_der: CertificateDer<'static>,
    cert_pem: String,
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
            cert_pem: cert.pem(),
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

    /// Writes `cert.pem` and `key.pem` into a new private directory under
    /// `std::env::temp_dir()`; the directory goes away when the guard drops.
    pub fn write_private(&self) -> std::io::Result<PemFiles> {
        let dir = private_dir(&std::env::temp_dir())?;
        let files = PemFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
        };
        // On failure `files` drops and takes the half-written directory with it.
        write_private_file(&files.cert, self.cert_pem.as_bytes())?;
        write_private_file(&files.key, self.key.serialize_pem().as_bytes())?;
        Ok(files)
    }
}

/// SHA-256 of `der`, as uppercase hex pairs joined by `:`.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let pairs: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    pairs.join(":")
}

/// A certificate and key on disk in a private directory, removed on drop.
#[derive(Debug)]
pub struct PemFiles {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl PemFiles {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn cert(&self) -> &Path {
        &self.cert
    }
    pub fn key(&self) -> &Path {
        &self.key
    }
}

impl Drop for PemFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A directory no one else can read, with a name no one could have guessed;
/// creating (never reusing) it means no one else could have prepared it.
fn private_dir(parent: &Path) -> std::io::Result<PathBuf> {
    let mut last = None;
    for _ in 0..16 {
        let dir = parent.join(format!(
            "weir-serve-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        match builder.create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary name")))
}

fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
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

    #[test]
    fn pem_files_are_private_load_and_go_away() {
        let ss = SelfSigned::generate().unwrap();
        let files = ss.write_private().unwrap();
        let loaded = crate::tls::certs::load_pair(files.cert(), files.key()).unwrap();
        assert_eq!(loaded.cert[0], *ss.cert_der());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(files.dir()), 0o700);
            assert_eq!(mode(files.key()), 0o600);
            assert_eq!(mode(files.cert()), 0o600);
        }
        let dir = files.dir().to_owned();
        drop(files);
        assert!(!dir.exists());
    }
}
