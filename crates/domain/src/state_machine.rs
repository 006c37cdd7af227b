//! The KYC and KYB state machines: states, transitions and the permission that
//! may perform each transition, in one table per machine.
//!
//! The database holds its own, independently written copy of each table (in
//! `crates/db/migrations/0000_baseline.sql`); the API crate's exhaustive tests prove that the
//! two agree on every (from, to) pair.

use crate::access::{Permission, UnknownName};
use std::fmt;
use std::str::FromStr;

/// A finite state of a machine.
pub trait State: Copy + Eq + fmt::Debug + 'static {
    /// Every state, in a fixed order.
    const ALL: &'static [Self];
    /// The only state a new record may be created in.
    const INITIAL: Self;
    /// The transition table (from, to, permission).
    const TRANSITIONS: &'static [Transition<Self>];
    /// The stable wire / database name.
    fn as_str(self) -> &'static str;

    /// The permission needed for `from → to`, or `None` when the transition does not exist.
    fn transition(from: Self, to: Self) -> Option<Permission> {
        Self::TRANSITIONS.iter().find(|t| t.from == from && t.to == to).map(|t| t.permission)
    }

    /// Parse a state name.
    fn parse(s: &str) -> Result<Self, UnknownName> {
        Self::ALL
            .iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownName { kind: "state", name: s.to_owned() })
    }

    /// A shortest sequence of transitions from [`State::INITIAL`] to `target`
    /// (empty for the initial state); `None` if unreachable. Used by tests to
    /// drive a record into any state through valid transitions only.
    fn path_from_initial(target: Self) -> Option<Vec<Self>> {
        let mut paths: Vec<(Self, Vec<Self>)> = vec![(Self::INITIAL, Vec::new())];
        let mut frontier = 0;
        while frontier < paths.len() {
            let (at, path) = paths[frontier].clone();
            if at == target {
                return Some(path);
            }
            for t in Self::TRANSITIONS.iter().filter(|t| t.from == at) {
                if !paths.iter().any(|(s, _)| *s == t.to) {
                    let mut p = path.clone();
                    p.push(t.to);
                    paths.push((t.to, p));
                }
            }
            frontier += 1;
        }
        None
    }
}

/// One allowed transition and the permission required to perform it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition<S> {
    /// Current state.
    pub from: S,
    /// Next state.
    pub to: S,
    /// The single permission that allows it.
    pub permission: Permission,
}

const fn t<S>(from: S, to: S, permission: Permission) -> Transition<S> {
    Transition { from, to, permission }
}

/// The state of a KYC case (`kyc_cases.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KycState {
    /// Opened by the customer; nothing submitted yet.
    Started,
    /// Documents uploaded and submitted for review.
    DocumentsSubmitted,
    /// An analyst is reviewing.
    InReview,
    /// Identity verified.
    Approved,
    /// Identity verification refused (terminal).
    Rejected,
    /// The analyst asked for new documents.
    NeedsResubmission,
    /// Verification lapsed (re-verification due) or the case was abandoned (terminal).
    Expired,
}

impl State for KycState {
    const ALL: &'static [Self] = &[
        KycState::Started,
        KycState::DocumentsSubmitted,
        KycState::InReview,
        KycState::Approved,
        KycState::Rejected,
        KycState::NeedsResubmission,
        KycState::Expired,
    ];
    const INITIAL: Self = KycState::Started;
    const TRANSITIONS: &'static [Transition<Self>] = {
        use KycState::*;
        use Permission::{KycCaseReview as Review, KycCaseSubmit as Submit};
        &[
            t(Started, DocumentsSubmitted, Submit),
            t(NeedsResubmission, DocumentsSubmitted, Submit),
            t(DocumentsSubmitted, InReview, Review),
            t(InReview, Approved, Review),
            t(InReview, Rejected, Review),
            t(InReview, NeedsResubmission, Review),
            t(Approved, Expired, Review),
            t(Started, Expired, Review),
            t(NeedsResubmission, Expired, Review),
        ]
    };
    fn as_str(self) -> &'static str {
        match self {
            KycState::Started => "started",
            KycState::DocumentsSubmitted => "documents_submitted",
            KycState::InReview => "in_review",
            KycState::Approved => "approved",
            KycState::Rejected => "rejected",
            KycState::NeedsResubmission => "needs_resubmission",
            KycState::Expired => "expired",
        }
    }
}

/// The screening state of an organization (`organizations.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KybState {
    /// Registered, never screened.
    Registered,
    /// Screening against sanctions / PEP lists in progress.
    Screening,
    /// Screening found nothing.
    Clear,
    /// Screening found a potential match; needs a human.
    PotentialMatch,
    /// A compliance officer is reviewing the match.
    ManualReview,
    /// The match was a false positive.
    Cleared,
    /// The match was confirmed (terminal).
    Blocked,
}

impl State for KybState {
    const ALL: &'static [Self] = &[
        KybState::Registered,
        KybState::Screening,
        KybState::Clear,
        KybState::PotentialMatch,
        KybState::ManualReview,
        KybState::Cleared,
        KybState::Blocked,
    ];
    const INITIAL: Self = KybState::Registered;
    const TRANSITIONS: &'static [Transition<Self>] = {
        use KybState::*;
        use Permission::{KybOrgDecide as Decide, KybOrgScreen as Screen};
        &[
            t(Registered, Screening, Screen),
            t(Screening, Clear, Screen),
            t(Screening, PotentialMatch, Screen),
            // Periodic re-screening of organizations in good standing.
            t(Clear, Screening, Screen),
            t(Cleared, Screening, Screen),
            t(PotentialMatch, ManualReview, Decide),
            t(ManualReview, Cleared, Decide),
            t(ManualReview, Blocked, Decide),
        ]
    };
    fn as_str(self) -> &'static str {
        match self {
            KybState::Registered => "registered",
            KybState::Screening => "screening",
            KybState::Clear => "clear",
            KybState::PotentialMatch => "potential_match",
            KybState::ManualReview => "manual_review",
            KybState::Cleared => "cleared",
            KybState::Blocked => "blocked",
        }
    }
}

macro_rules! impl_display_fromstr {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $t {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                <$t as State>::parse(s)
            }
        }
    };
}
impl_display_fromstr!(KycState);
impl_display_fromstr!(KybState);

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn check_machine<S: State + std::hash::Hash>() {
        let names: HashSet<_> = S::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names.len(), S::ALL.len(), "state names are unique");
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Ok(*s));
            assert!(S::path_from_initial(*s).is_some(), "{s:?} is reachable");
        }
        let pairs: HashSet<_> = S::TRANSITIONS.iter().map(|t| (t.from, t.to)).collect();
        assert_eq!(pairs.len(), S::TRANSITIONS.len(), "no duplicate transition");
        // Exhaustive: every (from, to) pair agrees with the table, no self-loops,
        // nothing leads back into the initial state (it is only ever inserted).
        for from in S::ALL {
            for to in S::ALL {
                let listed = pairs.contains(&(*from, *to));
                assert_eq!(S::transition(*from, *to).is_some(), listed);
                if from == to || *to == S::INITIAL {
                    assert!(!listed, "{from:?} -> {to:?} must not exist");
                }
            }
        }
        // Every path found by the helper uses only listed transitions.
        for s in S::ALL {
            let path = S::path_from_initial(*s).unwrap_or_default();
            let mut at = S::INITIAL;
            for next in path {
                assert!(S::transition(at, next).is_some());
                at = next;
            }
            assert_eq!(at, *s);
        }
    }

    #[test]
    fn kyc_machine_is_consistent() {
        check_machine::<KycState>();
        use KycState::*;
        // Terminal states.
        for s in [Rejected, Expired] {
            assert!(KycState::TRANSITIONS.iter().all(|t| t.from != s), "{s} is terminal");
        }
        assert_eq!(KycState::transition(InReview, Approved), Some(Permission::KycCaseReview));
        assert_eq!(KycState::transition(Started, DocumentsSubmitted), Some(Permission::KycCaseSubmit));
        assert_eq!(KycState::transition(Started, Approved), None);
    }

    #[test]
    fn kyb_machine_is_consistent_and_rescreens() {
        check_machine::<KybState>();
        use KybState::*;
        assert!(KybState::TRANSITIONS.iter().all(|t| t.from != Blocked), "blocked is terminal");
        assert_eq!(KybState::transition(Clear, Screening), Some(Permission::KybOrgScreen));
        assert_eq!(KybState::transition(Cleared, Screening), Some(Permission::KybOrgScreen));
        assert_eq!(KybState::transition(PotentialMatch, Cleared), None, "a match needs a review");
    }

    #[test]
    fn transition_permissions_are_not_customer_review_mixed() {
        // Customers perform only submissions; reviews are staff-only.
        for t in KycState::TRANSITIONS {
            assert!(matches!(t.permission, Permission::KycCaseSubmit | Permission::KycCaseReview));
        }
    }
}
