//! Defense in depth, database half: every (from, to) pair of each state machine is tried with
//! raw SQL under the application role's credentials; the set the database accepts must equal
//! the Rust table exactly. Plus: no insert in a non-initial state, no state change without its
//! history row, no history without its state change, no delete, and concurrent transitions of
//! one record cannot both win.

use fintrail_api::machines::{apply_transition, Machine};
use fintrail_db::testing::{fresh_db, RECORD_THIS_TRANSACTION};
use fintrail_db::DbRole;
use fintrail_domain::{KybState, KycState};
use std::collections::BTreeSet;
use tokio_postgres::Client;

/// (name, source) of the named functions in schema `fintrail`, by name.
async fn bodies(c: &tokio_postgres::Transaction<'_>, names: &[String]) -> Vec<(String, String)> {
    c.query(
        "SELECT proname::text, prosrc FROM pg_proc WHERE pronamespace = 'fintrail'::regnamespace \
         AND proname::text = ANY($1) ORDER BY 1",
        &[&names],
    )
    .await
    .expect("bodies")
    .iter()
    .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
    .collect()
}

/// A record in the initial state, with the audit events the database requires (migration 0036).
async fn new_record<M: Machine>(c: &Client) -> i64 {
    c.batch_execute("BEGIN").await.expect("begin");
    let id = insert_record::<M>(c).await;
    c.batch_execute(&format!("{RECORD_THIS_TRANSACTION}; COMMIT")).await.expect("commit with its events");
    id
}

async fn insert_record<M: Machine>(c: &Client) -> i64 {
    if M::TABLE == "kyc_cases" {
        let cust: i64 = c
            .query_one("INSERT INTO customers (display_name, email) VALUES ('A', 'a@example.com') RETURNING id", &[])
            .await
            .expect("customer")
            .get(0);
        c.query_one("INSERT INTO kyc_cases (customer_id, state) VALUES ($1, 'started') RETURNING id", &[&cust])
            .await
            .expect("case")
            .get(0)
    } else {
        c.query_one(
            "INSERT INTO organizations (legal_name, registration_number, country, state) \
             VALUES ('Acme', 'HRB 1', 'DE', 'registered') RETURNING id",
            &[],
        )
        .await
        .expect("organization")
        .get(0)
    }
}

async fn state_of<M: Machine>(c: &Client, id: i64) -> M {
    let row = c.query_one(&format!("SELECT state FROM {} WHERE id = $1", M::TABLE), &[&id]).await.expect("row");
    M::parse(row.get::<_, &str>(0)).expect("known state")
}

async fn try_transition<M: Machine>(c: &mut Client, id: i64, from: M, to: M) -> Result<(), tokio_postgres::Error> {
    let tx = c.transaction().await?;
    apply_transition::<M, _>(&tx, id, from, to, "test:sql", "exhaustive", None).await?;
    tx.batch_execute(RECORD_THIS_TRANSACTION).await?;
    tx.commit().await
}

async fn drive_to<M: Machine>(c: &mut Client, id: i64, target: M) {
    let mut at = M::INITIAL;
    for next in M::path_from_initial(target).expect("reachable") {
        try_transition(c, id, at, next).await.expect("a valid path transition succeeds");
        at = next;
    }
    assert_eq!(state_of::<M>(c, id).await, target);
}

async fn exhaustive<M: Machine>() {
    let db = fresh_db().await;
    let mut c = db.connect(DbRole::App).await.expect("app connects");
    let mut accepted = BTreeSet::new();
    for from in M::ALL {
        for to in M::ALL {
            let id = new_record::<M>(&c).await;
            drive_to(&mut c, id, *from).await;
            // 1. The proper protocol (history row + state change).
            let ok = try_transition(&mut c, id, *from, *to).await.is_ok();
            if ok {
                accepted.insert((from.as_str(), to.as_str()));
                assert_eq!(state_of::<M>(&c, id).await, *to);
            } else {
                assert_eq!(state_of::<M>(&c, id).await, *from, "nothing half-written");
            }
            // 2. A direct state change that skips the history is refused for every pair.
            if ok {
                continue;
            }
            let direct =
                c.execute(&format!("UPDATE {} SET state = $2 WHERE id = $1", M::TABLE), &[&id, &to.as_str()]).await;
            if from != to {
                assert!(direct.is_err(), "direct UPDATE {from:?} -> {to:?} must be refused");
            }
            assert_eq!(state_of::<M>(&c, id).await, *from);
        }
    }
    let rust: BTreeSet<_> = M::TRANSITIONS.iter().map(|t| (t.from.as_str(), t.to.as_str())).collect();
    assert_eq!(accepted, rust, "the database's transition table equals the Rust table");
    // And the database's own table, read back, is the same set.
    let allowed_table =
        if M::TABLE == "kyc_cases" { "kyc_allowed_transitions" } else { "organization_allowed_transitions" };
    let rows = c.query(&format!("SELECT from_state, to_state FROM {allowed_table}"), &[]).await.expect("allowed table");
    let listed: BTreeSet<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let rust_owned: BTreeSet<(String, String)> = rust.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(listed, rust_owned);
}

#[tokio::test]
async fn kyc_every_pair_raw_sql_matches_rust_table() {
    exhaustive::<KycState>().await;
}

#[tokio::test]
async fn kyb_every_pair_raw_sql_matches_rust_table() {
    exhaustive::<KybState>().await;
}

async fn structural_guards<M: Machine>() {
    let db = fresh_db().await;
    let mut c = db.connect(DbRole::App).await.expect("app connects");
    // No insert in a non-initial state.
    for s in M::ALL.iter().filter(|s| **s != M::INITIAL) {
        let sql = if M::TABLE == "kyc_cases" {
            c.batch_execute("BEGIN").await.expect("begin");
            let cust: i64 = c
                .query_one(
                    "INSERT INTO customers (display_name, email) VALUES ('B', 'b@example.com') RETURNING id",
                    &[],
                )
                .await
                .expect("customer")
                .get(0);
            c.batch_execute(&format!("{RECORD_THIS_TRANSACTION}; COMMIT")).await.expect("customer with its event");
            c.execute("INSERT INTO kyc_cases (customer_id, state) VALUES ($1, $2)", &[&cust, &s.as_str()]).await
        } else {
            c.execute("INSERT INTO organizations (legal_name, registration_number, country, state) VALUES ('X', 'Y', 'FR', $1)", &[&s.as_str()]).await
        };
        assert!(sql.is_err(), "insert in state {s:?} must be refused");
    }
    let id = new_record::<M>(&c).await;
    let t = M::TRANSITIONS[0];
    assert_eq!(t.from, M::INITIAL, "tables start with a transition out of the initial state");
    // History without the state change: refused at commit.
    let tx = c.transaction().await.expect("tx");
    tx.execute(
        &format!(
            "INSERT INTO {} ({}, from_state, to_state, actor, reason) VALUES ($1, $2, $3, 'x', 'y')",
            M::HISTORY,
            M::FK
        ),
        &[&id, &t.from.as_str(), &t.to.as_str()],
    )
    .await
    .expect("insert accepted until commit");
    // With its audit event, so that only the history check can refuse it.
    tx.batch_execute(RECORD_THIS_TRANSACTION).await.expect("events");
    let e = tx.commit().await.expect_err("history without its state change is refused at commit");
    assert_ne!(e.code().map(|c| c.code()), Some("FT030"), "refused by the history check, not the coupling: {e}");
    // State change pointing at no / someone else's history row: refused.
    let other = new_record::<M>(&c).await;
    let tx = c.transaction().await.expect("tx");
    let hid =
        apply_transition::<M, _>(&tx, other, t.from, t.to, "x", "y", None).await.expect("other record's transition");
    let stolen = tx
        .execute(
            &format!("UPDATE {} SET state = $2, last_transition_id = $3 WHERE id = $1", M::TABLE),
            &[&id, &t.to.as_str(), &hid],
        )
        .await;
    assert!(stolen.is_err(), "a history row of another record cannot be consumed");
    drop(tx);
    // A history row committed earlier cannot be replayed by a later transaction.
    let tx = c.transaction().await.expect("tx");
    let hid = apply_transition::<M, _>(&tx, other, t.from, t.to, "x", "y", None).await.expect("transition");
    tx.batch_execute(RECORD_THIS_TRANSACTION).await.expect("events");
    tx.commit().await.expect("commit");
    let back = M::TRANSITIONS.iter().find(|x| x.from == t.to).map(|x| x.to);
    if let Some(next) = back {
        let replay = c
            .execute(
                &format!("UPDATE {} SET state = $2, last_transition_id = $3 WHERE id = $1", M::TABLE),
                &[&other, &next.as_str(), &hid],
            )
            .await;
        assert!(replay.is_err(), "an old history row cannot authorize a new change");
    }
    // No delete, no truncate, no history rewrite, even for the app's own rows.
    assert!(c.execute(&format!("DELETE FROM {} WHERE id = $1", M::TABLE), &[&id]).await.is_err());
    assert!(c.batch_execute(&format!("TRUNCATE {}", M::TABLE)).await.is_err());
    assert!(c.execute(&format!("UPDATE {} SET reason = 'rewritten'", M::HISTORY), &[]).await.is_err());
    assert!(c.execute(&format!("DELETE FROM {}", M::HISTORY), &[]).await.is_err());
    // And not even the owner may delete a record or rewrite history (the trigger holds).
    let admin = db.connect(DbRole::Admin).await.expect("admin");
    admin.batch_execute("SET ROLE fintrail_owner").await.expect("set role");
    assert!(admin.execute(&format!("DELETE FROM fintrail.{} WHERE id = $1", M::TABLE), &[&id]).await.is_err());
    assert!(admin.execute(&format!("UPDATE fintrail.{} SET reason = 'rewritten'", M::HISTORY), &[]).await.is_err());
    // Identity columns never change, not even for the owner (FT002 from the generic trigger).
    let identity =
        if M::TABLE == "kyc_cases" { "customer_id = customer_id + 1000000" } else { "legal_name = legal_name || 'x'" };
    for set in ["created_at = created_at - interval '1 day'", identity] {
        let e = admin
            .execute(&format!("UPDATE fintrail.{} SET {set} WHERE id = $1", M::TABLE), &[&id])
            .await
            .expect_err("an identity column changed");
        assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("FT002"), "{set}: {e}");
    }
    // Both machines run trigger functions generated from the one template (`fintrail.sm_install`):
    // installing the machine again from the template changes no function body, and the bodies
    // are static SQL (no EXECUTE: cached plans).
    let (prefix, install) = if M::TABLE == "kyc_cases" {
        ("kyc_case", "SELECT fintrail.sm_install('kyc_case', 'kyc_cases', 'kyc_case_transitions', 'kyc_allowed_transitions', 'case_id', 'started', ARRAY['customer_id'])")
    } else {
        ("organization", "SELECT fintrail.sm_install('organization', 'organizations', 'organization_transitions', 'organization_allowed_transitions', 'organization_id', 'registered', ARRAY['legal_name', 'registration_number', 'country'])")
    };
    let names: Vec<String> = ["before_insert", "before_update", "refuse", "history_before_insert", "history_applied"]
        .iter()
        .map(|s| format!("{prefix}_{s}"))
        .collect();
    let mut admin = admin;
    let tx = admin.transaction().await.expect("tx");
    let installed = bodies(&tx, &names).await;
    assert_eq!(installed.len(), 5, "{installed:?}");
    assert!(installed.iter().all(|(_, src)| !src.contains("EXECUTE")), "static SQL only");
    tx.batch_execute(install).await.expect("reinstall from the template");
    assert_eq!(bodies(&tx, &names).await, installed, "the installed functions are the template's output");
    tx.rollback().await.expect("rollback");
}

#[tokio::test]
async fn kyc_structural_guards_hold_against_raw_sql() {
    structural_guards::<KycState>().await;
}

#[tokio::test]
async fn kyb_structural_guards_hold_against_raw_sql() {
    structural_guards::<KybState>().await;
}

/// Two transactions race to move the same record out of the same state to two different
/// targets; exactly one commits, the other is refused, and the history has one row for it.
async fn concurrent<M: Machine>(from: M, a: M, b: M) {
    let db = fresh_db().await;
    let mut setup = db.connect(DbRole::App).await.expect("app");
    let id = new_record::<M>(&setup).await;
    drive_to(&mut setup, id, from).await;
    let mut c1 = db.connect(DbRole::App).await.expect("c1");
    let mut c2 = db.connect(DbRole::App).await.expect("c2");
    let (r1, r2) = tokio::join!(try_transition(&mut c1, id, from, a), try_transition(&mut c2, id, from, b));
    assert!(r1.is_ok() != r2.is_ok(), "exactly one wins: {r1:?} / {r2:?}");
    let now = state_of::<M>(&setup, id).await;
    assert!(now == if r1.is_ok() { a } else { b });
    let n: i64 = setup
        .query_one(
            &format!("SELECT count(*) FROM {} WHERE {} = $1 AND from_state = $2", M::HISTORY, M::FK),
            &[&id, &from.as_str()],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1, "one history row for the single winning transition");
}

#[tokio::test]
async fn kyc_concurrent_transitions_cannot_both_win() {
    concurrent(KycState::InReview, KycState::Approved, KycState::Rejected).await;
}

#[tokio::test]
async fn kyb_concurrent_transitions_cannot_both_win() {
    concurrent(KybState::ManualReview, KybState::Cleared, KybState::Blocked).await;
}
