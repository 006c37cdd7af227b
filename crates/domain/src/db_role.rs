//! The PostgreSQL roles of fintrail, one name per concept across Rust, SQL, HCL and docs.

use std::fmt;

/// A database role fintrail connects as. Each exists for one purpose (least privilege).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DbRole {
    /// Cluster superuser (private cluster) or the Cloud SQL admin: bootstrap only
    /// (creating roles and the database); never used by the running service.
    Admin,
    /// Owns the schema; used only by migrations (NOLOGIN, reached via `SET ROLE`).
    Owner,
    /// The API: only the DML it needs; no UPDATE/DELETE on the audit trail.
    App,
    /// Logical replication for `fintrail cdc`: REPLICATION + SELECT on published tables only.
    Replicator,
    /// The audit sequencer and checkpoint writer: the only role that may INSERT into
    /// `audit_chain` and `audit_checkpoints` (SELECT on the trail, nothing else), so that the
    /// app credential cannot poison the chain.
    Sequencer,
}

impl DbRole {
    /// Every role, in a fixed order (used by exhaustive tests).
    pub const ALL: [DbRole; 5] = [DbRole::Admin, DbRole::Owner, DbRole::App, DbRole::Replicator, DbRole::Sequencer];

    /// The SQL name of the role.
    pub const fn sql_name(self) -> &'static str {
        match self {
            DbRole::Admin => "fintrail_admin",
            DbRole::Owner => "fintrail_owner",
            DbRole::App => "fintrail_app",
            DbRole::Replicator => "fintrail_replicator",
            DbRole::Sequencer => "fintrail_sequencer",
        }
    }

    /// Whether the role logs in with a password of its own (the owner never logs in).
    pub const fn can_login(self) -> bool {
        !matches!(self, DbRole::Owner)
    }
}

impl fmt::Display for DbRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_prefixed() {
        let names: std::collections::HashSet<_> = DbRole::ALL.iter().map(|r| r.sql_name()).collect();
        assert_eq!(names.len(), DbRole::ALL.len());
        assert!(names.iter().all(|n| n.starts_with("fintrail_")));
        assert!(!DbRole::Owner.can_login());
        assert!(DbRole::App.can_login());
    }
}
