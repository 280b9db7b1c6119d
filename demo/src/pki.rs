//! The mesh's one root of trust and its workload certificates with SPIFFE identities, as
//! Istio's CA issues them: `spiffe://cluster.local/ns/<namespace>/sa/<service account>`.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Files of one workload identity.
#[derive(Debug, Clone)]
pub struct Workload {
    pub spiffe_id: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct MeshCa {
    issuer: Issuer<'static, KeyPair>,
    pub root: PathBuf,
    dir: PathBuf,
}

pub fn spiffe_id(namespace: &str, service_account: &str) -> String {
    format!("spiffe://cluster.local/ns/{namespace}/sa/{service_account}")
}

fn write(path: &Path, text: &str) -> Result<(), PkiError> {
    fs::write(path, text).map_err(|error| PkiError::Write {
        path: path.to_path_buf(),
        error,
    })
}

impl MeshCa {
    /// A root CA written to `dir/root-cert.pem`.
    pub fn create(dir: &Path) -> Result<Self, PkiError> {
        fs::create_dir_all(dir).map_err(|error| PkiError::Write {
            path: dir.to_path_buf(),
            error,
        })?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::OrganizationName, "cluster.local");
        params
            .distinguished_name
            .push(DnType::CommonName, "globalmesh demo root CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let root = dir.join("root-cert.pem");
        write(&root, &cert.pem())?;
        Ok(MeshCa {
            issuer: Issuer::new(params, key),
            root,
            dir: dir.to_path_buf(),
        })
    }

    /// A workload certificate whose only SAN is its SPIFFE URI, for client and server use.
    pub fn workload(&self, namespace: &str, service_account: &str) -> Result<Workload, PkiError> {
        let spiffe_id = spiffe_id(namespace, service_account);
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![SanType::URI(spiffe_id.as_str().try_into()?)];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let stem = format!("{namespace}-{service_account}");
        let cert_path = self.dir.join(format!("{stem}-cert.pem"));
        let key_path = self.dir.join(format!("{stem}-key.pem"));
        write(&cert_path, &cert.pem())?;
        write(&key_path, &key.serialize_pem())?;
        Ok(Workload {
            spiffe_id,
            cert: cert_path,
            key: key_path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_certificate_carries_its_spiffe_id() {
        let dir = tempfile::tempdir().unwrap();
        let ca = MeshCa::create(dir.path()).unwrap();
        let sleep = ca.workload("foo", "sleep").unwrap();
        assert_eq!(sleep.spiffe_id, "spiffe://cluster.local/ns/foo/sa/sleep");
        assert!(std::fs::read_to_string(&sleep.cert)
            .unwrap()
            .contains("BEGIN CERTIFICATE"));
        assert!(ca.root.exists());
    }
}
