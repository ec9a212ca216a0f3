//! Picks a certificate by the client's SNI: the first whose SANs cover the
//! name (exact or wildcard, as webpki judges it), else the first configured.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug)]
pub struct Resolver {
    certs: Vec<Arc<CertifiedKey>>,
}

impl Resolver {
    pub fn new(certs: Vec<Arc<CertifiedKey>>) -> Resolver {
        Resolver { certs }
    }

    fn covers(cert: &CertifiedKey, name: &ServerName<'_>) -> bool {
        cert.end_entity_cert()
            .ok()
            .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
            .is_some_and(|ee| ee.verify_is_valid_for_subject_name(name).is_ok())
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let by_name = hello
            .server_name()
            .and_then(|sni| ServerName::try_from(sni).ok())
            .and_then(|name| self.certs.iter().find(|c| Self::covers(c, &name)));
        by_name.or_else(|| self.certs.first()).cloned()
    }
}
