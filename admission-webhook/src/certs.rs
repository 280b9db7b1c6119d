//! `admission-webhook certs`: a CA and a serving pair for the webhook's Service, so that a
//! cluster without cert-manager can run it.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("--dns {0:?} is not a valid DNS name")]
    DnsName(String),
}

/// The files written: `ca.crt`, `tls.crt`, `tls.key` (the key readable by its owner only).
#[derive(Debug, Clone)]
pub struct Written {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub sans: Vec<String>,
}

/// DNS names the serving certificate must cover for the API server to reach the Service.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

pub fn generate(
    service: &str,
    namespace: &str,
    extra_dns: &[String],
    extra_ips: &[IpAddr],
    out: &Path,
) -> Result<Written, CertsError> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("globalmesh webhook CA ({namespace})"),
    );
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut sans = service_names(service, namespace);
    sans.extend(extra_dns.iter().cloned());
    let mut params = CertificateParams::new(sans.clone())?;
    for dns in extra_dns {
        if dns.is_empty() || dns.contains(char::is_whitespace) {
            return Err(CertsError::DnsName(dns.clone()));
        }
    }
    params
        .subject_alt_names
        .extend(extra_ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{service}.{namespace}.svc"));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    let write = |name: &str, text: &str, private: bool| -> Result<PathBuf, CertsError> {
        let path = out.join(name);
        let error = |error| CertsError::Write {
            path: path.clone(),
            error,
        };
        fs::create_dir_all(out).map_err(error)?;
        fs::write(&path, text).map_err(error)?;
        if private {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(error)?;
        }
        Ok(path)
    };
    let mut all_sans = sans;
    all_sans.extend(extra_ips.iter().map(IpAddr::to_string));
    Ok(Written {
        ca: write("ca.crt", &ca_cert.pem(), false)?,
        cert: write("tls.crt", &cert.pem(), false)?,
        key: write("tls.key", &key.serialize_pem(), true)?,
        sans: all_sans,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_pair_that_rustls_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let written = generate(
            "globalmesh-webhook",
            "globalmesh",
            &["localhost".into()],
            &["127.0.0.1".parse().unwrap()],
            dir.path(),
        )
        .unwrap();
        crate::tls::load_pair(&written.cert, &written.key).unwrap();
        assert!(written
            .sans
            .contains(&"globalmesh-webhook.globalmesh.svc".to_string()));
        assert!(written
            .sans
            .contains(&"globalmesh-webhook.globalmesh.svc.cluster.local".to_string()));
        let mode = std::fs::metadata(&written.key).unwrap().permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
    }
}
