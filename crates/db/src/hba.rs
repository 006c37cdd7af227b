//! The private cluster's `pg_hba.conf`, written at `initdb` and re-asserted at every start
//! (so a cluster initialized before a change gets it too).
//!
//! - TLS only (issue #14): every line that accepts is `hostssl`; a plain TCP connection meets
//!   `hostnossl ... reject` first, whoever it is, before any password is asked. There is no
//!   `host` line (it would match plain connections too) and no Unix socket
//!   (`unix_socket_directories` is empty, and `local` is rejected anyway).
//! - Physical replication (`pg_basebackup`, `pg_receivewal`, a standby) would copy every file
//!   of the cluster: nobody needs it here, so it is rejected for every role, the replicator's
//!   included.
//! - A logical replication connection (`replication=database`: pgoutput, `pg_recvlogical`) is
//!   matched by the ordinary database lines: pg_hba cannot tell it from a plain session. What
//!   limits it is the REPLICATION attribute, which only `fintrail_replicator` has (the baseline's roles;
//!   the admin is the cluster's superuser). The replicator keeps a line of its own, so that
//!   what it may do is read in one place.
//! - 127.0.0.1 only, scram-sha-256 only; everything else is rejected.

/// The file's content.
pub fn conf() -> String {
    let replicator = fintrail_domain::db_role::DbRole::Replicator.sql_name();
    format!(
        "# fintrail private cluster (written by `fintrail db start`; rewritten at every start)\n\
         # TYPE    DATABASE     USER        ADDRESS        METHOD\n\
         local     all          all                        reject\n\
         # physical replication copies every file of the cluster: nobody\n\
         hostnossl replication  all         all            reject\n\
         hostssl   replication  all         all            reject\n\
         # no TLS, no entry (issue #14)\n\
         hostnossl all          all         all            reject\n\
         # the replicator (logical replication)\n\
         hostssl   all          {replicator} 127.0.0.1/32   scram-sha-256\n\
         hostssl   all          all         127.0.0.1/32   scram-sha-256\n\
         hostssl   all          all         all            reject\n"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn tls_only_and_physical_replication_is_rejected_before_any_accepting_line() {
        let c = super::conf();
        let lines: Vec<&str> = c.lines().filter(|l| !l.starts_with('#')).collect();
        let fields: Vec<Vec<&str>> = lines.iter().map(|l| l.split_whitespace().collect()).collect();
        let first_accept = fields.iter().position(|f| f.last() == Some(&"scram-sha-256")).unwrap();
        for f in &fields {
            let accepts = f.last() != Some(&"reject");
            assert!(["local", "hostssl", "hostnossl"].contains(&f[0]), "no `host` line: {c}");
            assert!(!accepts || (f[0] == "hostssl" && f.contains(&"127.0.0.1/32")), "{c}");
            assert!(f[0] != "hostnossl" || !accepts, "{c}");
        }
        for kind in ["hostnossl", "hostssl"] {
            let reject = fields.iter().position(|f| f[0] == kind && f[1] == "replication").unwrap();
            assert_eq!(fields[reject], [kind, "replication", "all", "all", "reject"]);
            assert!(reject < first_accept, "{c}");
        }
        let plain = fields.iter().position(|f| f[..4] == ["hostnossl", "all", "all", "all"]).unwrap();
        assert!(plain < first_accept, "{c}");
        assert!(!c.contains("trust") && !c.contains("md5") && !c.contains("password "), "{c}");
    }
}
