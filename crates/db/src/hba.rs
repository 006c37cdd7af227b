//! The private cluster's `pg_hba.conf`, written at `initdb` and re-asserted at every start
//! (so a cluster initialized before a change gets it too).
//!
//! - Physical replication (`pg_basebackup`, `pg_receivewal`, a standby) would copy every file
//!   of the cluster: nobody needs it here, so it is rejected for every role, the replicator's
//!   included.
//! - A logical replication connection (`replication=database`: pgoutput, `pg_recvlogical`) is
//!   matched by the ordinary database lines: pg_hba cannot tell it from a plain session. What
//!   limits it is the REPLICATION attribute, which only `fintrail_replicator` has (0001_roles;
//!   the admin is the cluster's superuser). The replicator has a line of its own so that TLS
//!   can be required of it alone.
//! - TLS seam (issue #14): once the cluster has a certificate, the replicator's line becomes
//!   `hostssl` (with `hostnossl all fintrail_replicator all reject` before it), and fintrail-cdc's
//!   `source::replication_config` stops passing `TlsConfig::disabled()`.
//! - 127.0.0.1 only, scram-sha-256 only; everything else is rejected.

/// The file's content.
pub fn conf() -> String {
    let replicator = fintrail_domain::db_role::DbRole::Replicator.sql_name();
    format!(
        "# fintrail private cluster (written by `fintrail db start`; rewritten at every start)\n\
         # TYPE  DATABASE     USER        ADDRESS        METHOD\n\
         local   all          all                        reject\n\
         # physical replication copies every file of the cluster: nobody\n\
         host    replication  all         all            reject\n\
         # the replicator (logical replication; `hostssl` once TLS lands, issue #14)\n\
         host    all          {replicator} 127.0.0.1/32   scram-sha-256\n\
         host    all          all         127.0.0.1/32   scram-sha-256\n\
         host    all          all         all            reject\n"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn physical_replication_is_rejected_before_any_accepting_line() {
        let c = super::conf();
        let lines: Vec<&str> = c.lines().filter(|l| !l.starts_with('#')).collect();
        let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.split_whitespace().collect()).collect();
        let reject = fields.iter().position(|f| f[1] == "replication").unwrap();
        assert_eq!(fields[reject], ["host", "replication", "all", "all", "reject"]);
        let first_accept = fields.iter().position(|f| f.last() == Some(&"scram-sha-256")).unwrap();
        assert!(reject < first_accept, "{c}");
        assert!(fields.iter().all(|f| f.last() == Some(&"reject") || f.contains(&"127.0.0.1/32")), "{c}");
        assert!(!c.contains("trust") && !c.contains("md5") && !c.contains("password "), "{c}");
    }
}
