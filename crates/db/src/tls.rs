//! TLS to PostgreSQL (issue #14): how every connection is encrypted and what it verifies.
//!
//! One [`Tls`] belongs to one [`crate::Database`] and is built once: the CA file is read and the
//! rustls configuration made when the database is configured, then shared (an `Arc`) by every
//! connection, so a connection costs one handshake and nothing per statement.
//!
//! - **Modes** ([`SslMode`], libpq's names): `verify-full` (the chain up to a trusted CA, and the
//!   certificate names the host we connect to), `verify-ca` (the chain only) and `disable`
//!   (plain TCP; only when explicitly asked for, and logged as a warning). No `prefer` or
//!   `require`: a mode that accepts any certificate protects against nobody who can sit in
//!   the middle.
//! - **Settings** (external servers): `FINTRAIL_DB_SSLMODE` (default `verify-full`) and
//!   `FINTRAIL_DB_SSLROOTCERT`, a PEM file of trusted CA certificates (Cloud SQL's server CA).
//!   Without it, `verify-full` trusts the public web roots (Mozilla's, compiled in) and
//!   `verify-ca` is refused: any public certificate would pass it.
//! - **The private cluster** always uses `verify-full` against its own CA
//!   (`FINTRAIL_HOME/tls/ca.crt`, see `certs` and `cluster`); the variables do not apply to it.
//! - Child processes get the same settings: [`Tls::libpq_env`] for PostgreSQL's own tools
//!   (`PGSSLMODE`, `PGSSLROOTCERT`), [`Tls::fintrail_env`] for another `fintrail`.
//!
//! rustls runs on ring, the provider the rest of the tree builds; the replication transport
//! (`fintrail-cdc`, pgwire-replication) gets the same mode and CA file from [`Tls::mode`] and
//! [`Tls::root_cert`].

use std::{
    fmt,
    path::{Path, PathBuf},
    str::FromStr,
    sync::Arc,
};

use anyhow::Context as _;
use rustls::{
    client::{danger, WebPkiServerVerifier},
    pki_types::{pem::PemObject as _, CertificateDer, ServerName, UnixTime},
    ClientConfig, RootCertStore,
};
use tokio_postgres_rustls::MakeRustlsConnect;

/// Names the mode: `verify-full` (default), `verify-ca` or `disable`.
pub const SSLMODE_ENV: &str = "FINTRAIL_DB_SSLMODE";
/// Names a PEM file of trusted CA certificates.
pub const SSLROOTCERT_ENV: &str = "FINTRAIL_DB_SSLROOTCERT";
/// The same CA certificates given inline, as PEM text: Cloud SQL's server CA, which `infra/`
/// passes from the instance's `server_ca_cert` (a public certificate, not a secret), so no
/// file has to be mounted into the container.
pub const SSLROOTCERT_PEM_ENV: &str = "FINTRAIL_DB_SSLROOTCERT_PEM";
/// Bounds the inline PEM (a CA bundle is a few KiB; Cloud Run caps a variable at 32 KiB).
const SSLROOTCERT_PEM_BYTES_MAX: usize = 32 * 1024;

/// What a connection requires of the server (libpq's `sslmode` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// TLS; the certificate chains to a trusted CA and names the host we connect to.
    VerifyFull,
    /// TLS; the certificate chains to a trusted CA (any host name).
    VerifyCa,
    /// Plain TCP: passwords and data in clear. Only when explicitly set.
    Disable,
}

impl SslMode {
    /// The libpq name (`PGSSLMODE`, `FINTRAIL_DB_SSLMODE`).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::VerifyFull => "verify-full",
            SslMode::VerifyCa => "verify-ca",
            SslMode::Disable => "disable",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "verify-full" => Ok(SslMode::VerifyFull),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "disable" => Ok(SslMode::Disable),
            "allow" | "prefer" | "require" => anyhow::bail!(
                "sslmode {s:?} is not supported: it accepts any certificate (or none); \
                 use verify-full, verify-ca or, knowingly, disable"
            ),
            _ => anyhow::bail!("sslmode {s:?} is not one of verify-full, verify-ca, disable"),
        }
    }
}

/// The TLS settings of one server, ready to connect with.
#[derive(Clone)]
pub struct Tls {
    mode: SslMode,
    root_cert: Option<PathBuf>,
    connector: MakeRustlsConnect,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tls({})", self.describe())
    }
}

impl Tls {
    /// `mode`, trusting the CA certificates of the PEM file `root_cert` (for `verify-full`
    /// without one: the public web roots). Reads and checks the file now: a missing,
    /// unreadable or empty file is an error naming it.
    pub fn new(mode: SslMode, root_cert: Option<&Path>) -> anyhow::Result<Self> {
        // Said wherever the mode comes from (a URL's environment, a service's, a test).
        if mode == SslMode::Disable {
            tracing::warn!(
                log_class = "app",
                "{SSLMODE_ENV}=disable: connections to PostgreSQL are NOT encrypted (passwords and data in clear)"
            );
        }
        let roots = match (mode, root_cert) {
            (SslMode::Disable, _) => RootCertStore::empty(),
            (_, Some(path)) => load_roots(path)?,
            (SslMode::VerifyFull, None) => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
            (SslMode::VerifyCa, None) => anyhow::bail!(
                "sslmode verify-ca needs {SSLROOTCERT_ENV} (the server's CA): against the public roots \
                 it would accept any publicly trusted certificate"
            ),
        };
        let connector = MakeRustlsConnect::new(client_config(mode, roots)?);
        let root_cert = if mode == SslMode::Disable { None } else { root_cert.map(Path::to_path_buf) };
        Ok(Self { mode, root_cert, connector })
    }

    /// The settings of an external server, from `FINTRAIL_DB_SSLMODE` and
    /// `FINTRAIL_DB_SSLROOTCERT` (empty counts as unset).
    pub fn from_env() -> anyhow::Result<Self> {
        let mode = std::env::var(SSLMODE_ENV).ok();
        let root = std::env::var_os(SSLROOTCERT_ENV).map(PathBuf::from);
        Self::from_settings(mode.as_deref(), root.as_deref())
    }

    /// [`Tls::from_env`] on given values: `mode` defaults to `verify-full`.
    pub fn from_settings(mode: Option<&str>, root_cert: Option<&Path>) -> anyhow::Result<Self> {
        let mode = match mode.map(str::trim).filter(|m| !m.is_empty()) {
            Some(m) => m.parse::<SslMode>().with_context(|| format!("{SSLMODE_ENV}={m}"))?,
            None => SslMode::VerifyFull,
        };
        Self::new(mode, root_cert.filter(|p| !p.as_os_str().is_empty()))
    }

    /// The private cluster: `verify-full` against its own CA certificate.
    pub fn private(ca_cert: &Path) -> anyhow::Result<Self> {
        Self::new(SslMode::VerifyFull, Some(ca_cert)).context("the private cluster's CA (run `fintrail db start`)")
    }

    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// The CA file trusted, if any (`None`: the public roots, or `disable`).
    pub fn root_cert(&self) -> Option<&Path> {
        self.root_cert.as_deref()
    }

    /// For messages: `verify-full (CA /path/ca.crt)`.
    pub fn describe(&self) -> String {
        match (self.mode, &self.root_cert) {
            (SslMode::Disable, _) => "disable (no TLS)".to_string(),
            (m, Some(p)) => format!("{m} (CA {})", p.display()),
            (m, None) => format!("{m} (public roots)"),
        }
    }

    /// The connector for tokio-postgres (and deadpool): cheap to clone, shares the rustls
    /// configuration. Pair it with a `tokio_postgres::Config` from [`Tls::apply`].
    pub fn connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }

    /// Sets `config`'s TLS requirement: required unless `disable`. The connector does the
    /// verifying; tokio-postgres's own `sslmode` only says whether TLS is mandatory.
    pub fn apply(&self, config: &mut tokio_postgres::Config) {
        config.ssl_mode(match self.mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::VerifyFull | SslMode::VerifyCa => tokio_postgres::config::SslMode::Require,
        });
    }

    /// libpq's environment for PostgreSQL's own tools (pgbench, pg_recvlogical, ...).
    /// `verify-full` without a CA file becomes `PGSSLROOTCERT=system` (libpq 16+).
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        libpq_env(self.mode, self.root_cert.as_deref())
    }

    /// The environment of a child `fintrail` process given this server's URL: the same mode
    /// and CA file.
    pub fn fintrail_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![(SSLMODE_ENV, self.mode.as_str().to_string())];
        if let Some(p) = &self.root_cert {
            env.push((SSLROOTCERT_ENV, p.display().to_string()));
        }
        env
    }

    /// A sentence on what went wrong with TLS in a failed connection, if that is why it failed:
    /// the CA, the host name, or a server that does not speak TLS.
    pub fn explain(&self, err: &(dyn std::error::Error + 'static), host: &str) -> Option<String> {
        let ca = || match &self.root_cert {
            Some(p) => format!("the CA certificates in {}", p.display()),
            None => format!("the public roots (set {SSLROOTCERT_ENV} to the server's CA)"),
        };
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(rustls::Error::InvalidCertificate(cert)) = rustls_error(e) {
                use rustls::CertificateError as C;
                return Some(match cert {
                    C::UnknownIssuer | C::BadSignature | C::UnhandledCriticalExtension => format!(
                        "TLS: the server's certificate was not issued by a trusted CA: it does not chain to {} ({cert:?})",
                        ca()
                    ),
                    C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                        "TLS: the server's certificate is not valid for the host name {host:?} ({}); \
                         connect by a name the certificate holds, or use verify-ca",
                        self.mode
                    ),
                    C::Expired | C::ExpiredContext { .. } => {
                        "TLS: the server's certificate has expired".to_string()
                    }
                    other => format!("TLS: the server's certificate was refused ({other:?})"),
                });
            }
            if e.to_string().contains("server does not support TLS") {
                return Some(format!(
                    "TLS: the server does not accept TLS, and {SSLMODE_ENV} is {}; plain connections \
                     are only made when {SSLMODE_ENV}=disable is set explicitly",
                    self.mode
                ));
            }
            cur = e.source();
        }
        None
    }
}

/// `PGSSLMODE` / `PGSSLROOTCERT` for `mode` and `root_cert` (see [`Tls::libpq_env`]).
pub fn libpq_env(mode: SslMode, root_cert: Option<&Path>) -> Vec<(&'static str, String)> {
    let mut env = vec![("PGSSLMODE", mode.as_str().to_string())];
    match (root_cert, mode) {
        (_, SslMode::Disable) => {}
        (Some(p), _) => env.push(("PGSSLROOTCERT", p.display().to_string())),
        (None, _) => env.push(("PGSSLROOTCERT", "system".to_string())),
    }
    env
}

/// The rustls error inside `e`, if it is one (tokio-rustls wraps it in an `io::Error`).
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    e.downcast_ref::<std::io::Error>()?.get_ref()?.downcast_ref::<rustls::Error>()
}

fn load_roots(path: &Path) -> anyhow::Result<RootCertStore> {
    let what = format!("{SSLROOTCERT_ENV}={}", path.display());
    let pem = std::fs::read(path).with_context(|| format!("{what}: cannot read the CA file"))?;
    roots_from_pem(&pem, &what)
}

/// Writes the inline CA certificates of `FINTRAIL_DB_SSLROOTCERT_PEM` to an owner-only file
/// under the system's temporary folder, named by their hash, and returns its path. Why a
/// file: every consumer (our connector, and libpq's `PGSSLROOTCERT` for child tools) takes
/// a path. The text is checked first, so a bad value is an error naming the variable.
pub fn write_inline_roots(pem: &str) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(
        pem.len() <= SSLROOTCERT_PEM_BYTES_MAX,
        "{SSLROOTCERT_PEM_ENV}: {} bytes, more than the {SSLROOTCERT_PEM_BYTES_MAX} a CA bundle needs",
        pem.len()
    );
    roots_from_pem(pem.as_bytes(), SSLROOTCERT_PEM_ENV)?;
    let digest = <sha2::Sha256 as sha2::Digest>::digest(pem.as_bytes());
    let name = format!("fintrail-db-ca-{}.pem", hex::encode(&digest[..8]));
    let path = std::env::temp_dir().join(name);
    // Same content, same name: a file left by an earlier start is replaced by identical bytes.
    crate::home::owner_only::replace_file(&path, pem.as_bytes())?;
    Ok(path)
}

fn roots_from_pem(pem: &[u8], what: &str) -> anyhow::Result<RootCertStore> {
    let what = || what.to_string();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: not a PEM file of certificates", what()))?;
    anyhow::ensure!(!certs.is_empty(), "{}: holds no PEM certificate", what());
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs);
    anyhow::ensure!(added > 0, "{}: none of its {ignored} certificates is usable as a CA", what());
    Ok(roots)
}

fn client_config(mode: SslMode, roots: RootCertStore) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    if mode == SslMode::Disable {
        // Never used (tokio-postgres does not start TLS), but one connector type for all modes.
        return Ok(builder.with_root_certificates(roots).with_no_client_auth());
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .context("building the certificate verifier")?;
    let builder = match mode {
        SslMode::VerifyCa => builder.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnly(verifier))),
        _ => builder.with_webpki_verifier(verifier),
    };
    Ok(builder.with_no_client_auth())
}

/// `verify-ca`: the full verification of rustls, except that a certificate valid for another
/// host name is accepted. rustls checks the name last, after the chain, the validity period
/// and the usage, so this error means everything else passed.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError as C;
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. })) => {
                Ok(danger::ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_weak_ones_are_refused_by_name() {
        assert_eq!("verify-full".parse::<SslMode>().unwrap(), SslMode::VerifyFull);
        assert_eq!("verify-ca".parse::<SslMode>().unwrap(), SslMode::VerifyCa);
        assert_eq!("disable".parse::<SslMode>().unwrap(), SslMode::Disable);
        for weak in ["require", "prefer", "allow"] {
            let e = weak.parse::<SslMode>().unwrap_err().to_string();
            assert!(e.contains("not supported"), "{e}");
        }
        let e = format!("{:#}", Tls::from_settings(Some("verify_full"), None).unwrap_err());
        assert!(e.contains("FINTRAIL_DB_SSLMODE=verify_full") && e.contains("not one of"), "{e}");
    }

    #[test]
    fn defaults_and_ca_files() {
        let t = Tls::from_settings(None, None).unwrap();
        assert_eq!((t.mode(), t.root_cert()), (SslMode::VerifyFull, None));
        assert_eq!(Tls::from_settings(Some(""), Some(Path::new(""))).unwrap().mode(), SslMode::VerifyFull);
        let e = format!("{:#}", Tls::from_settings(Some("verify-ca"), None).unwrap_err());
        assert!(e.contains("FINTRAIL_DB_SSLROOTCERT"), "{e}");
        let e = format!("{:#}", Tls::from_settings(None, Some(Path::new("/nonexistent/ca.pem"))).unwrap_err());
        assert!(e.contains("/nonexistent/ca.pem") && e.contains("cannot read"), "{e}");

        let dir = std::env::temp_dir().join(format!("fintrail-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "no certificate here\n").unwrap();
        let e = format!("{:#}", Tls::from_settings(None, Some(&junk)).unwrap_err());
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, crate::certs::generate(&["localhost"]).unwrap().ca_cert_pem).unwrap();
        let t = Tls::from_settings(Some("verify-ca"), Some(&ca)).unwrap();
        assert_eq!(t.root_cert(), Some(ca.as_path()));
        assert_eq!(
            t.libpq_env(),
            [("PGSSLMODE", "verify-ca".to_string()), ("PGSSLROOTCERT", ca.display().to_string())]
        );
        assert_eq!(t.fintrail_env()[0], (SSLMODE_ENV, "verify-ca".to_string()));
        let plain = Tls::from_settings(Some("disable"), Some(&ca)).unwrap();
        assert_eq!((plain.mode(), plain.root_cert()), (SslMode::Disable, None));
        assert_eq!(plain.libpq_env(), [("PGSSLMODE", "disable".to_string())]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
