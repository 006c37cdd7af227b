//! Access model: single named permissions and the roles that bundle them.
//!
//! This is the one place where permissions and roles are declared. Every HTTP
//! endpoint requires exactly one [`Permission`]; a principal holds exactly one
//! [`Role`]; a role is a fixed set of permissions. To add a capability (issue 4:
//! wallets, transfers), add a variant to [`Permission`], list it in
//! [`Permission::ALL`] and in the roles that should hold it — the exhaustive
//! tests below and the API's authorization matrix pick it up automatically.

use std::fmt;
use std::str::FromStr;

/// One single, named capability (`area.object.verb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Staff: create a customer record.
    IdentityCustomerCreate,
    /// Staff: read any customer record.
    IdentityCustomerRead,
    /// Customer: read one's own profile.
    IdentitySelfRead,
    /// Staff: issue a bearer token for a customer.
    TokenIssue,
    /// Staff: revoke any bearer token.
    TokenRevoke,
    /// Customer: open one's own KYC case.
    KycCaseCreate,
    /// Customer: read one's own KYC cases.
    KycCaseReadOwn,
    /// Customer: submit (or resubmit) documents on one's own case.
    KycCaseSubmit,
    /// Staff: read any KYC case and its history.
    KycCaseRead,
    /// Staff: review transitions (in_review, approved, rejected, ...).
    KycCaseReview,
    /// Customer: upload ID documents and selfies to one's own case.
    KycMediaUpload,
    /// Staff: obtain a signed URL to read uploaded media.
    KycMediaRead,
    /// Staff: register an organization (KYB).
    KybOrgCreate,
    /// Staff: read organizations and their history.
    KybOrgRead,
    /// Staff / screening engine: screening transitions and re-screening.
    KybOrgScreen,
    /// Staff: manual review decisions (cleared, blocked).
    KybOrgDecide,
    /// Staff: read the audit trail.
    AuditRead,
    /// Reserved for issue 4 (wallets): read wallets and balances.
    WalletRead,
    /// Reserved for issue 4 (transfers): create a transfer.
    WalletTransferCreate,
    /// Staff: open a wallet for a customer (approved KYC) or an organization (cleared).
    WalletOpen,
    /// Staff: deposit external funds into a wallet.
    WalletDeposit,
    /// Staff: withdraw funds from a wallet to settlement.
    WalletWithdraw,
    /// Staff: reverse a transfer (a new, mirrored transfer; at most once).
    WalletTransferReverse,
    /// Staff: create a hold (pending two-phase transfer).
    WalletHoldCreate,
    /// Staff: post or void a hold.
    WalletHoldSettle,
    /// Staff: read statements and ledger-wide figures.
    LedgerRead,
    /// Customer: open one's own wallet (needs an approved KYC case).
    WalletOwnOpen,
    /// Customer: read one's own wallets, balances and statements.
    WalletOwnRead,
    /// Customer: transfer from one's own wallet.
    WalletOwnTransfer,
    /// System (periodic job, no role holds it): write a signed audit checkpoint.
    AuditCheckpointWrite,
    /// System (periodic job, no role holds it): purge audit events through a signed checkpoint.
    AuditRetentionPurge,
    /// System (periodic job, no role holds it): drop idempotency keys past their retention.
    LedgerIdempotencyPurge,
    /// System (periodic job, no role holds it): read the replication slot's health.
    CdcHealthRead,
    /// Staff: read the analytics the CDC pipeline maintains (aggregates; the console's charts).
    AnalyticsRead,
    /// Staff: read the least-privilege findings and escalation paths of the infrastructure.
    IamRead,
}

impl Permission {
    /// Every permission, in declaration order (exhaustive tests iterate this).
    pub const ALL: [Permission; 35] = [
        Permission::IdentityCustomerCreate,
        Permission::IdentityCustomerRead,
        Permission::IdentitySelfRead,
        Permission::TokenIssue,
        Permission::TokenRevoke,
        Permission::KycCaseCreate,
        Permission::KycCaseReadOwn,
        Permission::KycCaseSubmit,
        Permission::KycCaseRead,
        Permission::KycCaseReview,
        Permission::KycMediaUpload,
        Permission::KycMediaRead,
        Permission::KybOrgCreate,
        Permission::KybOrgRead,
        Permission::KybOrgScreen,
        Permission::KybOrgDecide,
        Permission::AuditRead,
        Permission::WalletRead,
        Permission::WalletTransferCreate,
        Permission::WalletOpen,
        Permission::WalletDeposit,
        Permission::WalletWithdraw,
        Permission::WalletTransferReverse,
        Permission::WalletHoldCreate,
        Permission::WalletHoldSettle,
        Permission::LedgerRead,
        Permission::WalletOwnOpen,
        Permission::WalletOwnRead,
        Permission::WalletOwnTransfer,
        Permission::AuditCheckpointWrite,
        Permission::AuditRetentionPurge,
        Permission::LedgerIdempotencyPurge,
        Permission::CdcHealthRead,
        Permission::AnalyticsRead,
        Permission::IamRead,
    ];

    /// The stable wire / database / log name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Permission::IdentityCustomerCreate => "identity.customer.create",
            Permission::IdentityCustomerRead => "identity.customer.read",
            Permission::IdentitySelfRead => "identity.self.read",
            Permission::TokenIssue => "token.issue",
            Permission::TokenRevoke => "token.revoke",
            Permission::KycCaseCreate => "kyc.case.create",
            Permission::KycCaseReadOwn => "kyc.case.read_own",
            Permission::KycCaseSubmit => "kyc.case.submit",
            Permission::KycCaseRead => "kyc.case.read",
            Permission::KycCaseReview => "kyc.case.review",
            Permission::KycMediaUpload => "kyc.media.upload",
            Permission::KycMediaRead => "kyc.media.read",
            Permission::KybOrgCreate => "kyb.org.create",
            Permission::KybOrgRead => "kyb.org.read",
            Permission::KybOrgScreen => "kyb.org.screen",
            Permission::KybOrgDecide => "kyb.org.decide",
            Permission::AuditRead => "audit.read",
            Permission::WalletRead => "wallet.read",
            Permission::WalletTransferCreate => "wallet.transfer.create",
            Permission::WalletOpen => "wallet.open",
            Permission::WalletDeposit => "wallet.deposit",
            Permission::WalletWithdraw => "wallet.withdraw",
            Permission::WalletTransferReverse => "wallet.transfer.reverse",
            Permission::WalletHoldCreate => "wallet.hold.create",
            Permission::WalletHoldSettle => "wallet.hold.settle",
            Permission::LedgerRead => "ledger.read",
            Permission::WalletOwnOpen => "wallet.own.open",
            Permission::WalletOwnRead => "wallet.own.read",
            Permission::WalletOwnTransfer => "wallet.own.transfer",
            Permission::AuditCheckpointWrite => "audit.checkpoint.write",
            Permission::AuditRetentionPurge => "audit.retention.purge",
            Permission::LedgerIdempotencyPurge => "ledger.idempotency.purge",
            Permission::CdcHealthRead => "cdc.health.read",
            Permission::AnalyticsRead => "analytics.read",
            Permission::IamRead => "iam.read",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown permission or role name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {name:?}")]
pub struct UnknownName {
    /// What was being parsed ("permission", "role", "state", ...).
    pub kind: &'static str,
    /// The offending input.
    pub name: String,
}

impl FromStr for Permission {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownName { kind: "permission", name: s.to_owned() })
    }
}

/// Whether a principal is a customer (reaches only its own data) or staff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// An end customer; every customer route is scoped to the customer's own id.
    Customer,
    /// An employee or an operator tool.
    Staff,
}

impl PrincipalKind {
    /// The stable name (`customer` / `staff`).
    pub const fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Customer => "customer",
            PrincipalKind::Staff => "staff",
        }
    }
}

/// A named set of permissions. Declared only here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// An end customer (self-service only).
    Customer,
    /// Reviews KYC cases and reads their media.
    KycAnalyst,
    /// Runs KYB screening and decides manual reviews.
    ComplianceOfficer,
    /// Reads everything that is evidence; changes nothing.
    Auditor,
    /// Operates identities and tokens; holds every staff permission.
    Admin,
}

use Permission as P;

const CUSTOMER: &[Permission] = &[
    P::IdentitySelfRead,
    P::KycCaseCreate,
    P::KycCaseReadOwn,
    P::KycCaseSubmit,
    P::KycMediaUpload,
    P::WalletOwnOpen,
    P::WalletOwnRead,
    P::WalletOwnTransfer,
];
const KYC_ANALYST: &[Permission] = &[P::IdentityCustomerRead, P::KycCaseRead, P::KycCaseReview, P::KycMediaRead];
const COMPLIANCE_OFFICER: &[Permission] =
    &[P::KybOrgCreate, P::KybOrgRead, P::KybOrgScreen, P::KybOrgDecide, P::KycCaseRead, P::AuditRead, P::AnalyticsRead];
const AUDITOR: &[Permission] = &[
    P::IdentityCustomerRead,
    P::KycCaseRead,
    P::KybOrgRead,
    P::AuditRead,
    P::WalletRead,
    P::LedgerRead,
    P::AnalyticsRead,
    P::IamRead,
];
const ADMIN: &[Permission] = &[
    P::IdentityCustomerCreate,
    P::IdentityCustomerRead,
    P::TokenIssue,
    P::TokenRevoke,
    P::KycCaseRead,
    P::KycCaseReview,
    P::KycMediaRead,
    P::KybOrgCreate,
    P::KybOrgRead,
    P::KybOrgScreen,
    P::KybOrgDecide,
    P::AuditRead,
    P::WalletRead,
    P::WalletTransferCreate,
    P::WalletOpen,
    P::WalletDeposit,
    P::WalletWithdraw,
    P::WalletTransferReverse,
    P::WalletHoldCreate,
    P::WalletHoldSettle,
    P::LedgerRead,
    P::AnalyticsRead,
    P::IamRead,
];

impl Role {
    /// Every role, in a fixed order (exhaustive tests and the authorization matrix).
    pub const ALL: [Role; 5] = [Role::Customer, Role::KycAnalyst, Role::ComplianceOfficer, Role::Auditor, Role::Admin];

    /// The stable name used by `fintrail token create --role NAME` and stored with tokens.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::KycAnalyst => "kyc_analyst",
            Role::ComplianceOfficer => "compliance_officer",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// The permissions of the role (the single source of truth).
    pub const fn permissions(self) -> &'static [Permission] {
        match self {
            Role::Customer => CUSTOMER,
            Role::KycAnalyst => KYC_ANALYST,
            Role::ComplianceOfficer => COMPLIANCE_OFFICER,
            Role::Auditor => AUDITOR,
            Role::Admin => ADMIN,
        }
    }

    /// Whether the role holds `p`.
    pub fn grants(self, p: Permission) -> bool {
        self.permissions().contains(&p)
    }

    /// Customers reach only their own data; everybody else is staff.
    pub const fn principal_kind(self) -> PrincipalKind {
        match self {
            Role::Customer => PrincipalKind::Customer,
            _ => PrincipalKind::Staff,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownName { kind: "role", name: s.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn permission_names_are_unique_round_trip_and_well_formed() {
        let names: HashSet<_> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(names.len(), Permission::ALL.len());
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
            assert!(p.as_str().split('.').count() >= 2, "{p} is area.verb at least");
            assert!(p.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_'));
        }
        assert!("kyc.case.nuke".parse::<Permission>().is_err());
    }

    #[test]
    fn roles_round_trip_and_have_no_duplicate_permissions() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            let set: HashSet<_> = r.permissions().iter().collect();
            assert_eq!(set.len(), r.permissions().len(), "{r} lists a permission twice");
            assert!(!r.permissions().is_empty());
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn customer_permissions_are_self_service_only() {
        // A customer must never hold a permission that reaches other customers' data.
        let staff_only = [
            P::IdentityCustomerRead,
            P::IdentityCustomerCreate,
            P::KycCaseRead,
            P::KycCaseReview,
            P::KycMediaRead,
            P::AuditRead,
            P::TokenIssue,
            P::TokenRevoke,
        ];
        for p in staff_only {
            assert!(!Role::Customer.grants(p), "customer holds {p}");
        }
        // And staff never hold customer self-service permissions (they have no "self").
        for r in Role::ALL.into_iter().filter(|r| *r != Role::Customer) {
            for p in CUSTOMER {
                assert!(!r.grants(*p), "{r} holds customer permission {p}");
            }
            assert_eq!(r.principal_kind(), PrincipalKind::Staff);
        }
    }

    #[test]
    fn auditor_changes_nothing() {
        for p in Role::Auditor.permissions() {
            let s = p.as_str();
            assert!(s.ends_with(".read") || s == "audit.read", "auditor holds {s}");
        }
    }
}
