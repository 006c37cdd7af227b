//! Audit event types and the tamper-evident hash chain over them.
//!
//! The chain is pure computation (no I/O): the API crate stores events, a
//! sequencer links them, and `fintrail audit verify` recomputes the links with
//! exactly these functions.
//!
//! Link `n` = SHA-256(`DOMAIN` ‖ link `n-1` ‖ canonical(event `n`)), with link
//! "-1" = 32 zero bytes (genesis). The canonical encoding is a fixed sequence of
//! tagged, length-prefixed fields, so no two distinct events encode alike.

use sha2::{Digest, Sha256};
use std::fmt;

/// What happened. Stable names are stored in `audit_events.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditAction {
    /// A customer record was created.
    CustomerCreated,
    /// A bearer token was issued.
    TokenIssued,
    /// A bearer token was revoked.
    TokenRevoked,
    /// A principal's role changed (reserved: roles are bound to tokens today).
    RoleChanged,
    /// A KYC case was opened.
    KycCaseCreated,
    /// A KYC case changed state.
    KycCaseTransitioned,
    /// An organization was registered.
    OrganizationCreated,
    /// An organization changed screening state.
    OrganizationTransitioned,
    /// A media object was uploaded.
    MediaUploaded,
    /// A signed URL was issued for a media object.
    SignedUrlIssued,
    /// A signed URL was redeemed (download served).
    SignedUrlRedeemed,
    /// A signed URL was refused (tampered, expired, other object).
    SignedUrlRefused,
    /// A request was denied (missing permission or other customer's data).
    AccessDenied,
    /// A wallet was opened.
    LedgerWalletOpened,
    /// A transfer between two wallets was posted.
    LedgerTransferPosted,
    /// A deposit from an external funding account was posted.
    LedgerDepositPosted,
    /// A withdrawal to an external account was posted.
    LedgerWithdrawalPosted,
    /// A reversal of an earlier transfer was posted.
    LedgerReversalPosted,
    /// A hold reserved funds.
    LedgerHoldCreated,
    /// A hold was posted (its `hold_post` transfer moved the money).
    LedgerHoldPosted,
    /// A hold was voided (its funds released).
    LedgerHoldVoided,
    /// A hold expired (its funds released).
    LedgerHoldExpired,
    /// A periodic job started (`fintrail jobs`).
    JobStarted,
    /// A periodic job finished, with its counts.
    JobFinished,
    /// A periodic job failed or found a problem (alertable: audit-verify, cdc-health).
    JobFailed,
    /// A staff token was exchanged for a console session (the compliance console's login).
    ConsoleSessionOpened,
    /// A console session was ended by its holder (logout).
    ConsoleSessionClosed,
}

impl AuditAction {
    /// Every action, in a fixed order.
    pub const ALL: [AuditAction; 27] = [
        AuditAction::CustomerCreated,
        AuditAction::TokenIssued,
        AuditAction::TokenRevoked,
        AuditAction::RoleChanged,
        AuditAction::KycCaseCreated,
        AuditAction::KycCaseTransitioned,
        AuditAction::OrganizationCreated,
        AuditAction::OrganizationTransitioned,
        AuditAction::MediaUploaded,
        AuditAction::SignedUrlIssued,
        AuditAction::SignedUrlRedeemed,
        AuditAction::SignedUrlRefused,
        AuditAction::AccessDenied,
        AuditAction::LedgerWalletOpened,
        AuditAction::LedgerTransferPosted,
        AuditAction::LedgerDepositPosted,
        AuditAction::LedgerWithdrawalPosted,
        AuditAction::LedgerReversalPosted,
        AuditAction::LedgerHoldCreated,
        AuditAction::LedgerHoldPosted,
        AuditAction::LedgerHoldVoided,
        AuditAction::LedgerHoldExpired,
        AuditAction::JobStarted,
        AuditAction::JobFinished,
        AuditAction::JobFailed,
        AuditAction::ConsoleSessionOpened,
        AuditAction::ConsoleSessionClosed,
    ];

    /// The stable name.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditAction::CustomerCreated => "customer.created",
            AuditAction::TokenIssued => "token.issued",
            AuditAction::TokenRevoked => "token.revoked",
            AuditAction::RoleChanged => "role.changed",
            AuditAction::KycCaseCreated => "kyc.case.created",
            AuditAction::KycCaseTransitioned => "kyc.case.transitioned",
            AuditAction::OrganizationCreated => "kyb.organization.created",
            AuditAction::OrganizationTransitioned => "kyb.organization.transitioned",
            AuditAction::MediaUploaded => "media.uploaded",
            AuditAction::SignedUrlIssued => "media.signed_url.issued",
            AuditAction::SignedUrlRedeemed => "media.signed_url.redeemed",
            AuditAction::SignedUrlRefused => "media.signed_url.refused",
            AuditAction::AccessDenied => "access.denied",
            AuditAction::LedgerWalletOpened => "ledger.wallet.opened",
            AuditAction::LedgerTransferPosted => "ledger.transfer.posted",
            AuditAction::LedgerDepositPosted => "ledger.deposit.posted",
            AuditAction::LedgerWithdrawalPosted => "ledger.withdrawal.posted",
            AuditAction::LedgerReversalPosted => "ledger.reversal.posted",
            AuditAction::LedgerHoldCreated => "ledger.hold.created",
            AuditAction::LedgerHoldPosted => "ledger.hold.posted",
            AuditAction::LedgerHoldVoided => "ledger.hold.voided",
            AuditAction::LedgerHoldExpired => "ledger.hold.expired",
            AuditAction::JobStarted => "job.started",
            AuditAction::JobFinished => "job.finished",
            AuditAction::JobFailed => "job.failed",
            AuditAction::ConsoleSessionOpened => "console.session.opened",
            AuditAction::ConsoleSessionClosed => "console.session.closed",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stored audit event exactly as the chain covers it. `before`/`after` are
/// the JSON texts as stored (PostgreSQL's `jsonb` output is canonical); PII is
/// referenced by id in them, never copied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditRecord {
    /// Sequence number (gaps allowed: rolled-back transactions consume numbers).
    pub seq: i64,
    /// Commit-side timestamp, microseconds since the Unix epoch.
    pub at_unix_micros: i64,
    /// Who acted (`staff:<token id>:<name>`, `customer:<id>`, `system:<name>`).
    pub actor: String,
    /// The data subject the action concerns (`customer:<id>`), if any.
    pub on_behalf_of: Option<String>,
    /// [`AuditAction::as_str`].
    pub action: String,
    /// The object acted upon (`kyc_case:<id>`, `token:<id>`, ...).
    pub subject: String,
    /// The permission that allowed the action, or the one that was missing.
    pub permission: Option<String>,
    /// Whether the action was allowed (false for denials and refusals).
    pub allowed: bool,
    /// The request id (`x-request-id`) that caused it, if any.
    pub request_id: Option<String>,
    /// State before, as JSON text.
    pub before: Option<String>,
    /// State after, as JSON text.
    pub after: Option<String>,
}

/// A chain link (SHA-256 output).
pub type Link = [u8; 32];

/// The link before the first event.
pub const GENESIS: Link = [0u8; 32];

/// Domain separation for the chain hash (versioned: a new encoding gets a new tag).
pub const CHAIN_DOMAIN: &[u8] = b"fintrail.audit.chain.v1\0";

/// The link of an event given the previous link and the event's canonical encoding (what
/// [`AuditRecordRef::canonical_into`] wrote): verification encodes a chunk of events first and
/// hashes them afterwards.
pub fn link_of_canonical(prev: &Link, canonical: &[u8]) -> Link {
    let mut h = Sha256::new();
    h.update(CHAIN_DOMAIN);
    h.update(prev);
    h.update(canonical);
    h.finalize().into()
}

fn put_str(out: &mut Vec<u8>, tag: u8, s: &str) {
    out.push(tag);
    out.extend_from_slice(&(s.len() as u64).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, tag: u8, s: Option<&str>) {
    match s {
        // Absent and empty differ: absent is tag | 0xFF with no length.
        None => out.push(tag | 0x80),
        Some(s) => put_str(out, tag, s),
    }
}

/// A borrowed view of an [`AuditRecord`] (verification hashes rows without copying them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRecordRef<'a> {
    /// See [`AuditRecord::seq`].
    pub seq: i64,
    /// See [`AuditRecord::at_unix_micros`].
    pub at_unix_micros: i64,
    /// See [`AuditRecord::actor`].
    pub actor: &'a str,
    /// See [`AuditRecord::on_behalf_of`].
    pub on_behalf_of: Option<&'a str>,
    /// See [`AuditRecord::action`].
    pub action: &'a str,
    /// See [`AuditRecord::subject`].
    pub subject: &'a str,
    /// See [`AuditRecord::permission`].
    pub permission: Option<&'a str>,
    /// See [`AuditRecord::allowed`].
    pub allowed: bool,
    /// See [`AuditRecord::request_id`].
    pub request_id: Option<&'a str>,
    /// See [`AuditRecord::before`].
    pub before: Option<&'a str>,
    /// See [`AuditRecord::after`].
    pub after: Option<&'a str>,
}

impl AuditRecordRef<'_> {
    /// Append the canonical encoding of this event to `out`.
    pub fn canonical_into(&self, out: &mut Vec<u8>) {
        out.push(1);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.push(2);
        out.extend_from_slice(&self.at_unix_micros.to_be_bytes());
        put_str(out, 3, self.actor);
        put_opt(out, 4, self.on_behalf_of);
        put_str(out, 5, self.action);
        put_str(out, 6, self.subject);
        put_opt(out, 7, self.permission);
        out.push(8);
        out.push(u8::from(self.allowed));
        put_opt(out, 9, self.request_id);
        put_opt(out, 10, self.before);
        put_opt(out, 11, self.after);
    }

    /// The link of this event given the previous link. `scratch` is reused between calls so
    /// verification allocates nothing per event.
    pub fn link(&self, prev: &Link, scratch: &mut Vec<u8>) -> Link {
        scratch.clear();
        self.canonical_into(scratch);
        link_of_canonical(prev, scratch)
    }
}

impl AuditRecord {
    /// The borrowed view.
    pub fn view(&self) -> AuditRecordRef<'_> {
        AuditRecordRef {
            seq: self.seq,
            at_unix_micros: self.at_unix_micros,
            actor: &self.actor,
            on_behalf_of: self.on_behalf_of.as_deref(),
            action: &self.action,
            subject: &self.subject,
            permission: self.permission.as_deref(),
            allowed: self.allowed,
            request_id: self.request_id.as_deref(),
            before: self.before.as_deref(),
            after: self.after.as_deref(),
        }
    }

    /// Append the canonical encoding of this event to `out`.
    pub fn canonical_into(&self, out: &mut Vec<u8>) {
        self.view().canonical_into(out);
    }

    /// The link of this event given the previous link.
    pub fn link(&self, prev: &Link, scratch: &mut Vec<u8>) -> Link {
        self.view().link(prev, scratch)
    }
}

/// The first place where a trail and its stored chain disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// The stored link of event `seq` differs from the recomputed one
    /// (the event, or one before it, was modified, inserted or reordered).
    LinkMismatch {
        /// The first event whose link does not match.
        seq: i64,
    },
    /// A chained event is missing from the trail (deleted).
    MissingEvent {
        /// The sequence number recorded in the chain.
        seq: i64,
    },
    /// An event exists that the chain never recorded in that position (inserted).
    UnchainedEvent {
        /// The inserted event's sequence number.
        seq: i64,
    },
    /// Events are not in strictly increasing sequence order.
    OutOfOrder {
        /// The event that came out of order.
        seq: i64,
    },
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainBreak::LinkMismatch { seq } => {
                write!(f, "event {seq}: hash chain link does not match (modified or reordered)")
            }
            ChainBreak::MissingEvent { seq } => {
                write!(f, "event {seq}: recorded in the chain but missing from the trail (deleted)")
            }
            ChainBreak::UnchainedEvent { seq } => {
                write!(f, "event {seq}: present in the trail but not in the chain (inserted)")
            }
            ChainBreak::OutOfOrder { seq } => write!(f, "event {seq}: out of sequence order"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(seq: i64) -> AuditRecord {
        AuditRecord {
            seq,
            at_unix_micros: 1_700_000_000_000_000 + seq,
            actor: "staff:1:alice".into(),
            on_behalf_of: Some("customer:7".into()),
            action: AuditAction::KycCaseTransitioned.as_str().into(),
            subject: "kyc_case:3".into(),
            permission: Some("kyc.case.review".into()),
            allowed: true,
            request_id: Some("r-1".into()),
            before: Some(r#"{"state": "in_review"}"#.into()),
            after: Some(r#"{"state": "approved"}"#.into()),
        }
    }

    #[test]
    fn action_names_unique() {
        let names: std::collections::HashSet<_> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(names.len(), AuditAction::ALL.len());
    }

    #[test]
    fn link_depends_on_prev_and_every_field() {
        let mut s = Vec::new();
        let base = sample(5);
        let l = base.link(&GENESIS, &mut s);
        assert_ne!(l, base.link(&[1u8; 32], &mut s));
        let variants: Vec<AuditRecord> = vec![
            AuditRecord { seq: 6, ..base.clone() },
            AuditRecord { at_unix_micros: 0, ..base.clone() },
            AuditRecord { actor: "x".into(), ..base.clone() },
            AuditRecord { on_behalf_of: None, ..base.clone() },
            AuditRecord { on_behalf_of: Some(String::new()), ..base.clone() },
            AuditRecord { action: "y".into(), ..base.clone() },
            AuditRecord { subject: "z".into(), ..base.clone() },
            AuditRecord { permission: None, ..base.clone() },
            AuditRecord { allowed: false, ..base.clone() },
            AuditRecord { request_id: None, ..base.clone() },
            AuditRecord { before: None, ..base.clone() },
            AuditRecord { after: None, ..base.clone() },
        ];
        for v in variants {
            assert_ne!(v.link(&GENESIS, &mut s), l, "{v:?}");
        }
    }

    proptest! {
        #![proptest_config(fintrail_testseed::proptest_config!())]
        // Shifting bytes between adjacent fields never yields the same encoding.
        #[test]
        fn encoding_is_injective_on_field_boundaries(a in ".{0,8}", b in ".{0,8}", c in ".{0,8}", d in ".{0,8}") {
            let r1 = AuditRecord { actor: a.clone(), action: b.clone(), ..sample(1) };
            let r2 = AuditRecord { actor: c.clone(), action: d.clone(), ..sample(1) };
            let (mut e1, mut e2) = (Vec::new(), Vec::new());
            r1.canonical_into(&mut e1);
            r2.canonical_into(&mut e2);
            prop_assert_eq!(e1 == e2, a == c && b == d);
        }
    }
}
