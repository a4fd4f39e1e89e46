//! `em-sim --tls`: HTTPS with a certificate generated at start.
//!
//! By default the certificate is self-signed *and marked as a CA*, as `openssl req -x509` and
//! many EM installs make them: rustls will not accept it as a trusted root, so only a pin (or
//! turning verification off) reaches it, exactly the situation users face. With a CA-issued
//! certificate (`--tls-ca`) a client can trust the generated CA instead.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// One self-signed certificate, marked as a CA (like EM's default).
    SelfSigned,
    /// A generated CA and a server certificate it issued.
    CaIssued,
}

/// What the simulator serves with, and what clients need to trust it.
pub struct TlsMaterial {
    pub server: rustls::ServerConfig,
    /// SHA-256 of the server certificate, hex (what `EMGW_EM_CERT_SHA256` takes).
    pub fingerprint: String,
    /// PEM to give clients as a CA file: the CA, or the self-signed certificate itself.
    pub trust_pem: String,
}

pub fn generate(mode: TlsMode, names: &[String]) -> Result<TlsMaterial, String> {
    let err = |e: rcgen::Error| e.to_string();
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(err)?;
    params.distinguished_name.push(DnType::CommonName, "em-sim");
    let (cert_der, trust_pem) = match mode {
        TlsMode::SelfSigned => {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let cert = params.self_signed(&key).map_err(err)?;
            (cert.der().clone(), cert.pem())
        }
        TlsMode::CaIssued => {
            let ca_key = KeyPair::generate().map_err(err)?;
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
            ca_params
                .distinguished_name
                .push(DnType::CommonName, "em-sim test CA");
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
            let issuer = Issuer::new(ca_params, ca_key);
            let cert = params.signed_by(&key, &issuer).map_err(err)?;
            (cert.der().clone(), ca_cert.pem())
        }
    };
    let fingerprint = crate::em::tls::sha256_hex(cert_der.as_ref());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert_der.to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(|e| e.to_string())?;
    Ok(TlsMaterial {
        server,
        fingerprint,
        trust_pem,
    })
}
