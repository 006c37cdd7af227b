//! The private cluster's certificates (issue #14): a CA of its own and one server certificate
//! it signed, generated with `rcgen` (ECDSA P-256, ring).
//!
//! - The CA signs the server certificate once, and its private key is then dropped, never
//!   written: nobody, fintrail included, can issue another certificate that fintrail's
//!   clients would trust. Renewing means a new CA and a new server certificate together.
//! - The server certificate names every way fintrail reaches the cluster: `localhost`,
//!   `127.0.0.1` and `::1` (the cluster listens on 127.0.0.1 only; the others cost nothing and
//!   keep a client that says `localhost` verifiable).
//! - Both are valid for [`VALIDITY_DAYS`] from yesterday (a clock a little behind still accepts
//!   them); `Cluster::start` renews them when fewer than [`RENEW_BEFORE_DAYS`] are left.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// The names in the server certificate (its subject alternative names).
pub const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
/// How long a new certificate is valid.
pub const VALIDITY_DAYS: u64 = 825;
/// `Cluster::start` renews the certificates when fewer days than this are left.
pub const RENEW_BEFORE_DAYS: u64 = 30;

const DAY: u64 = 86_400;

/// A CA certificate and the server certificate and key it signed, PEM.
pub struct Generated {
    pub ca_cert_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl std::fmt::Debug for Generated {
    // Never print a private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generated").field("server_key_pem", &"***").finish_non_exhaustive()
    }
}

/// A new CA (its key dropped on return) and a server certificate for `names`, valid for
/// [`VALIDITY_DAYS`].
pub fn generate(names: &[&str]) -> anyhow::Result<Generated> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).context("the clock is before 1970")?.as_secs();
    let (from, until) = (now.saturating_sub(DAY), now + VALIDITY_DAYS * DAY);

    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca.distinguished_name.push(DnType::OrganizationName, "fintrail");
    // A name of its own: another home's CA is then an unknown issuer, not a look-alike whose
    // signature fails.
    let id: [u8; 6] = rand::random();
    ca.distinguished_name.push(DnType::CommonName, format!("fintrail private cluster CA {}", hex::encode(id)));
    // It signs end-entity certificates only (path length 0).
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut ca, from, until);
    let ca_cert = ca.self_signed(&ca_key).context("signing the CA certificate")?;
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate().context("generating the server key")?;
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut server = CertificateParams::new(names.clone()).context("server certificate names")?;
    server.distinguished_name.push(DnType::OrganizationName, "fintrail");
    server.distinguished_name.push(DnType::CommonName, names.first().map(String::as_str).unwrap_or("localhost"));
    server.is_ca = IsCa::ExplicitNoCa;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    set_validity(&mut server, from, until);
    let server_cert = server.signed_by(&server_key, &issuer).context("signing the server certificate")?;

    Ok(Generated {
        ca_cert_pem: ca_cert.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    })
}

/// Whether the first certificate in `pem` expires within `days` (or has expired).
pub fn expires_within(pem: &[u8], days: u64) -> anyhow::Result<bool> {
    use rustls::pki_types::{pem::PemObject as _, CertificateDer};
    use x509_cert::der::Decode as _;
    let der = CertificateDer::from_pem_slice(pem).context("not a PEM certificate")?;
    let cert = x509_cert::Certificate::from_der(&der).context("not an X.509 certificate")?;
    let not_after = cert.tbs_certificate.validity.not_after.to_unix_duration();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    Ok(not_after <= now + Duration::from_secs(days * DAY))
}

fn set_validity(params: &mut CertificateParams, from_unix: u64, until_unix: u64) {
    let (y, m, d) = civil_date(from_unix / DAY);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil_date(until_unix / DAY);
    params.not_after = rcgen::date_time_ymd(y, m, d);
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`),
/// so that no second time library is needed beside the one rcgen takes.
fn civil_date(days: u64) -> (i32, u8, u8) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(59), (1970, 3, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(19_782), (2024, 2, 29));
        assert_eq!(civil_date(20_454), (2026, 1, 1));
    }

    #[test]
    fn a_new_certificate_is_not_due_for_renewal_and_keys_are_never_printed() {
        let g = generate(&SERVER_NAMES).expect("generated");
        assert!(g.ca_cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(g.server_key_pem.contains("PRIVATE KEY"));
        assert!(!expires_within(g.server_cert_pem.as_bytes(), RENEW_BEFORE_DAYS).expect("parsed"));
        assert!(expires_within(g.server_cert_pem.as_bytes(), VALIDITY_DAYS + 1).expect("parsed"));
        assert!(!format!("{g:?}").contains("PRIVATE"));
        assert!(expires_within(b"not a certificate", 1).is_err());
    }
}
