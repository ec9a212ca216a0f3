//! A CA and leaf certificates made in the test (rcgen), so TLS tests
//! verify for real instead of turning verification off.

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::CertificateDer;

pub struct Pki {
    pub ca: CertificateDer<'static>,
    /// (cert PEM, key PEM, leaf DER) per leaf.
    pub leaves: Vec<(String, String, CertificateDer<'static>)>,
}

pub fn pki(leaf_names: &[&[&str]]) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(params, ca_key);
    let leaves = leaf_names
        .iter()
        .map(|names| {
            let key = KeyPair::generate().unwrap();
            let params =
                CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                    .unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem(), cert.der().clone())
        })
        .collect();
    Pki {
        ca: ca_cert.der().clone(),
        leaves,
    }
}

impl Pki {
    pub fn ca_pem(&self) -> String {
        pem_of(&self.ca)
    }
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    use std::fmt::Write;
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    let b64 = base64(der.as_ref());
    for chunk in b64.as_bytes().chunks(64) {
        let _ = writeln!(out, "{}", String::from_utf8_lossy(chunk));
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}
