//! The checked-in policy (`analytics/replication.toml`) and views (`analytics/views/*.sql`)
//! against the REAL schema: a database migrated with `crates/db/migrations`, rows written
//! through the real triggers (KYC/KYB history, ledger postings), the pipeline run end to end
//! (snapshot, then streaming) into a DuckDB file.

mod common;
use common::*;

use std::collections::BTreeSet;

use fintrail_cdc::pipeline::Options;
use fintrail_cdc::policy::{Decision, Policy};
use fintrail_cdc::status::Status;
use fintrail_db::testing::fresh_db;
use fintrail_db::{Database, DbRole};

/// Runs SQL as the admin (the superuser: triggers and CHECKs still apply), in the schema.
async fn admin_sql(db: &Database, sql: &str) {
    let c = db.connect(DbRole::Admin).await.unwrap();
    c.batch_execute(&format!("SET search_path = fintrail; {sql}"))
        .await
        .unwrap_or_else(|e| panic!("{e:?}\nwhile running:\n{sql}"));
}

/// One state change the way the triggers demand it: the history row first, then the record's
/// state + `last_transition_id` pointing at it, in one transaction.
fn kyc_step(case_id: i64, from: &str, to: &str) -> String {
    format!(
        "BEGIN;
         INSERT INTO kyc_case_transitions (case_id, from_state, to_state, actor, reason, request_id)
              VALUES ({case_id}, '{from}', '{to}', 'operator:alice@fintrail.test', 'reason {from}->{to}', 'req-kyc');
         UPDATE kyc_cases SET state = '{to}',
                last_transition_id = (SELECT max(id) FROM kyc_case_transitions WHERE case_id = {case_id})
          WHERE id = {case_id};
         COMMIT;"
    )
}

fn kyb_step(org_id: i64, from: &str, to: &str) -> String {
    format!(
        "BEGIN;
         INSERT INTO organization_transitions (organization_id, from_state, to_state, actor, reason)
              VALUES ({org_id}, '{from}', '{to}', 'screening-bot', 'screening note {from}->{to}');
         UPDATE organizations SET state = '{to}',
                last_transition_id = (SELECT max(id) FROM organization_transitions WHERE organization_id = {org_id})
          WHERE id = {org_id};
         COMMIT;"
    )
}

const WALLET_SYS_FUND: &str = "(SELECT id FROM wallets WHERE system_name = 'external_funding' AND currency = 'EUR')";
const WALLET_ANN: &str = "(SELECT id FROM wallets WHERE customer_id = 1 AND currency = 'EUR')";
const WALLET_ACME: &str = "(SELECT id FROM wallets WHERE organization_id = 1 AND currency = 'EUR')";

/// Rows in every policy table, written before the slot exists (they reach the sink by the
/// snapshot).
fn snapshot_rows() -> String {
    let mut sql = String::from(
        "INSERT INTO customers (display_name, email) VALUES ('Ann Example', 'ann@example.test'), ('Bob Example', 'bob@example.test');
         INSERT INTO api_tokens (token_hash, role, customer_id, label, expires_at) VALUES
             (sha256('t1'::bytea), 'customer', 1, 'ann phone', now() + interval '1 day'),
             (sha256('t2'::bytea), 'admin', NULL, 'ops laptop', now() + interval '1 day');
         INSERT INTO kyc_cases (customer_id, state) VALUES (1, 'started'), (2, 'started');
         INSERT INTO organizations (legal_name, registration_number, country, state) VALUES
             ('Acme GmbH', 'HRB 12345', 'DE', 'registered'), ('Globex BV', 'KVK 7654321', 'NL', 'registered');
         INSERT INTO media_objects (customer_id, kyc_case_id, kind, content_type, size_bytes, sha256, storage_key)
              VALUES (1, 1, 'id_document', 'image/jpeg', 1234, sha256('doc'::bytea), 'kyc/1/doc-1');
         INSERT INTO audit_events (actor, on_behalf_of, action, subject, permission, allowed, request_id, before, after)
              VALUES ('token:2', NULL, 'customer.created', 'customer:1', 'customers.create', true, 'req-1', NULL,
                      '{\"email\":\"ann@example.test\"}');",
    );
    for (from, to) in
        [("started", "documents_submitted"), ("documents_submitted", "in_review"), ("in_review", "approved")]
    {
        sql.push_str(&kyc_step(1, from, to));
    }
    for (from, to) in [("started", "documents_submitted"), ("documents_submitted", "in_review")] {
        sql.push_str(&kyc_step(2, from, to));
    }
    for (from, to) in [
        ("registered", "screening"),
        ("screening", "potential_match"),
        ("potential_match", "manual_review"),
        ("manual_review", "cleared"),
    ] {
        sql.push_str(&kyb_step(1, from, to));
    }
    for (from, to) in [("registered", "screening"), ("screening", "clear")] {
        sql.push_str(&kyb_step(2, from, to));
    }
    sql.push_str(&format!(
        "INSERT INTO wallets (kind, system_name, currency) VALUES ('system', 'external_funding', 'EUR'), ('system', 'settlement', 'EUR');
         INSERT INTO wallets (kind, customer_id, currency) VALUES ('customer', 1, 'EUR');
         INSERT INTO wallets (kind, organization_id, currency) VALUES ('organization', 1, 'EUR');
         INSERT INTO transfers (kind, debit_wallet_id, credit_wallet_id, amount_minor, currency, actor, idempotency_key, request_id)
              VALUES ('deposit', {WALLET_SYS_FUND}, {WALLET_ANN}, 10000, 'EUR', 'token:2', 'idem-secret-1', 'req-2');
         INSERT INTO transfers (kind, debit_wallet_id, credit_wallet_id, amount_minor, currency, actor)
              VALUES ('transfer', {WALLET_ANN}, {WALLET_ACME}, 300, 'EUR', 'token:1');
         INSERT INTO holds (debit_wallet_id, credit_wallet_id, amount_minor, currency, actor, expires_at)
              VALUES ({WALLET_ANN}, {WALLET_ACME}, 100, 'EUR', 'token:1', now() + interval '1 hour');"
    ));
    sql
}

/// Changes after the snapshot (they reach the sink by the stream): inserts into every policy
/// table, updates (revocation, state changes, balances, a hold posted), a reversal.
fn streamed_rows() -> String {
    let mut sql = String::from(
        "INSERT INTO customers (display_name, email) VALUES ('Cy Example', 'cy@example.test');
         UPDATE api_tokens SET revoked_at = now() WHERE id = 1;
         INSERT INTO api_tokens (token_hash, role, customer_id, label, expires_at)
              VALUES (sha256('t3'::bytea), 'customer', 3, 'cy tablet', now() + interval '1 day');
         INSERT INTO kyc_cases (customer_id, state) VALUES (3, 'started');
         INSERT INTO organizations (legal_name, registration_number, country, state) VALUES ('Initech SA', 'RCS B 1', 'LU', 'registered');
         INSERT INTO media_objects (customer_id, kyc_case_id, kind, content_type, size_bytes, sha256, storage_key)
              VALUES (2, 2, 'selfie', 'image/png', 999, sha256('selfie'::bytea), 'kyc/2/selfie-1');
         INSERT INTO audit_events (actor, on_behalf_of, action, subject, permission, allowed, request_id, before, after)
              VALUES ('token:2', 'customer:2', 'kyc.transition', 'customer:2', 'kyc.review', true, 'req-3',
                      '{\"state\":\"in_review\"}', '{\"state\":\"needs_resubmission\"}');",
    );
    sql.push_str(&kyc_step(2, "in_review", "needs_resubmission"));
    sql.push_str(&kyc_step(2, "needs_resubmission", "documents_submitted"));
    sql.push_str(&kyc_step(3, "started", "documents_submitted"));
    sql.push_str(&kyb_step(2, "clear", "screening"));
    sql.push_str(&kyb_step(3, "registered", "screening"));
    sql.push_str(&format!(
        "BEGIN;
         UPDATE holds SET status = 'posted', posted_minor = 100 WHERE id = 1;
         INSERT INTO transfers (kind, debit_wallet_id, credit_wallet_id, amount_minor, currency, hold_id, actor)
              VALUES ('hold_post', {WALLET_ANN}, {WALLET_ACME}, 100, 'EUR', 1, 'token:1');
         COMMIT;
         INSERT INTO transfers (kind, debit_wallet_id, credit_wallet_id, amount_minor, currency, reverses_transfer_id, actor)
              VALUES ('reversal', {WALLET_ACME}, {WALLET_ANN}, 300, 'EUR', 2, 'token:2');
         INSERT INTO holds (debit_wallet_id, credit_wallet_id, amount_minor, currency, actor, expires_at)
              VALUES ({WALLET_ANN}, {WALLET_ACME}, 50, 'EUR', 'token:1', now() + interval '1 hour');
         UPDATE holds SET status = 'voided' WHERE id = 2;"
    ));
    sql
}

/// Source columns of a table, in attribute order.
async fn source_columns(c: &tokio_postgres::Client, table: &str) -> Vec<String> {
    c.query(
        "SELECT column_name::text FROM information_schema.columns
          WHERE table_schema = 'fintrail' AND table_name = $1 ORDER BY ordinal_position",
        &[&table],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The view names and the columns each must have (its shape: what dashboards rely on).
const VIEW_SHAPES: &[(&str, &[&str])] = &[
    ("daily_transfer_volume", &["day", "currency", "transfers", "volume_minor"]),
    ("kyc_funnel", &["state", "cases_reached", "cases_now"]),
    ("kyc_time_in_state", &["state", "exits", "median_secs", "p90_secs"]),
    ("screening_outcomes", &["day", "outcome", "organizations"]),
    ("active_wallets", &["currency", "active_wallets_30d", "wallets"]),
];

#[tokio::test]
async fn every_policy_column_exists_in_the_migrated_schema() {
    let db = fresh_db().await;
    without_audit_coupling(&db).await;
    let policy = Policy::load(None).unwrap();
    let c = db.connect(DbRole::Admin).await.unwrap();
    let mut problems = Vec::new();
    for t in policy.tables() {
        let cols = source_columns(&c, t).await;
        if cols.is_empty() {
            problems.push(format!("table {t} does not exist"));
            continue;
        }
        let names: Vec<&str> = cols.iter().map(String::as_str).collect();
        for u in policy.unknown_columns(t, &names) {
            problems.push(format!("{t}.{u} does not exist (columns: {})", cols.join(", ")));
        }
        // Every column of a replicated table carries an explicit decision: a column added by a
        // later migration is withheld by default deny, but someone must decide it (keep,
        // pseudonymize or drop) in analytics/replication.toml, in the same change.
        for col in &cols {
            if matches!(policy.decide(t, col), Decision::Withhold { listed: false }) {
                problems.push(format!(
                    "{t}.{col} has no rule in analytics/replication.toml (decide keep | pseudonymize | drop)"
                ));
            }
        }
        // The key must leave (keep or pseudonymize), or the table could never be published.
        let pk: Vec<String> = c
            .query(
                "SELECT a.attname::text FROM pg_index i
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                  WHERE i.indrelid = ('fintrail.' || $1)::regclass AND i.indisprimary",
                &[&t],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert!(!pk.is_empty(), "{t} has no primary key");
        for k in pk {
            if matches!(policy.decide(t, &k), Decision::Withhold { .. }) {
                problems.push(format!("{t}.{k} is the primary key but the policy withholds it"));
            }
        }
    }
    assert!(problems.is_empty(), "the replication policy does not match the schema:\n{}", problems.join("\n"));

    // The pipeline's own setup agrees: everything published, nothing skipped, no typo reported.
    let report = fintrail_cdc::source::setup(&db, &policy, &names("schema_setup")).await.unwrap();
    assert_eq!(report.published, policy.tables().map(str::to_owned).collect::<Vec<_>>());
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert!(report.unknown_columns.is_empty(), "{:?}", report.unknown_columns);
    // And the database enforces it: per table, the publication's column list and the
    // replicator's column grants are exactly the columns the policy lets out.
    let admin = db.connect(fintrail_db::DbRole::Admin).await.unwrap();
    for t in policy.tables() {
        let want: Vec<String> = report.published_columns.iter().find(|(n, _)| n == t).unwrap().1.clone();
        let mut expected: Vec<&str> = policy.columns(t).filter(|c| policy.lets_out(t, c)).collect();
        let mut got: Vec<&str> = want.iter().map(String::as_str).collect();
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, expected, "{t}");
        let (published, granted) =
            fintrail_cdc::source::exposure(&admin, &policy.schema, t, &names("schema_setup")).await.unwrap();
        assert_eq!(published.as_ref(), Some(&want), "{t}: the publication's column list");
        assert_eq!(granted, want, "{t}: the replicator's column grants");
    }
}

#[tokio::test]
async fn a_misspelt_policy_column_is_reported_by_setup() {
    let db = fresh_db().await;
    without_audit_coupling(&db).await;
    // `emial`: the real `email` column is silently withheld by this typo; setup must say so.
    let policy =
        Policy::parse("[tables.customers.columns]\nid = \"keep\"\nemial = \"pseudonymize\"\ncreated_at = \"keep\"\n")
            .unwrap();
    let report = fintrail_cdc::source::setup(&db, &policy, &names("typo")).await.unwrap();
    assert_eq!(report.published, vec!["customers".to_string()]);
    assert_eq!(report.unknown_columns, vec![("customers".to_string(), vec!["emial".to_string()])]);
    let withheld = &report.withheld_columns[0];
    assert!(withheld.1.contains(&"email".to_string()), "{withheld:?}");
}

#[tokio::test]
async fn the_policy_and_views_work_on_the_real_schema_end_to_end() {
    init_tracing();
    let db = fresh_db().await;
    without_audit_coupling(&db).await;
    let policy = Policy::load(None).unwrap();
    let names = names("real");
    let dir = temp_dir("real");
    let path = dir.join("a.duckdb");
    let status_path = dir.join("status.json");
    let opts = Options {
        names: names.clone(),
        views: fintrail_cdc::cli::views(),
        status_path: Some(status_path.clone()),
        ..Default::default()
    };

    admin_sql(&db, &snapshot_rows()).await;
    let s = catch_up_with(&db, &policy, &path, opts.clone()).await.unwrap();
    assert!(s.snapshot_rows > 30, "snapshot copied {} rows", s.snapshot_rows);
    admin_sql(&db, &streamed_rows()).await;
    let s = catch_up_with(&db, &policy, &path, opts.clone()).await.unwrap();
    assert!(s.streamed_rows > 20, "streamed {} rows", s.streamed_rows);

    let st = Status::read(&status_path).unwrap().expect("the pipeline wrote its status");
    assert!(st.last_error.is_none(), "{:?}", st.last_error);
    assert!(st.views_failed.is_empty(), "views not applied: {:?}", st.views_failed);
    assert!(st.skipped_tables.is_empty(), "{:?}", st.skipped_tables);
    assert!(st.unknown_policy_columns.is_empty(), "{:?}", st.unknown_policy_columns);
    assert!(st.foreign_slots.is_empty() && st.other_publications.is_empty(), "{st:?}");

    // Every policy table: exactly the kept + pseudonymized columns (source order), same rows
    // as the source, and no withheld column anywhere in the sink.
    let src = db.connect(DbRole::Admin).await.unwrap();
    for t in policy.tables() {
        let cols = source_columns(&src, t).await;
        let expected: Vec<String> =
            cols.iter().filter(|c| !matches!(policy.decide(t, c), Decision::Withhold { .. })).cloned().collect();
        assert_eq!(duck_columns(&path, "main", t), expected, "columns of main.{t}");
        let history = duck_columns(&path, "history", t);
        assert_eq!(&history[..expected.len()], &expected[..], "columns of history.{t}");
        assert!(history[expected.len()..].iter().all(|c| c.starts_with('_')), "history.{t}: {history:?}");
        let n_src: i64 = src.query_one(&format!("SELECT count(*) FROM fintrail.{t}"), &[]).await.unwrap().get(0);
        assert!(n_src > 0, "the test wrote no row into {t}");
        assert_eq!(duck_i64(&path, &format!("SELECT count(*) FROM main.{t}")), n_src, "rows of {t}");
        for c in cols.iter().filter(|c| matches!(policy.decide(t, c), Decision::Withhold { .. })) {
            let n = duck_i64(
                &path,
                &format!("SELECT count(*) FROM information_schema.columns WHERE table_name IN ('{t}', 'stage_{t}') AND column_name = '{c}'"),
            );
            assert_eq!(n, 0, "withheld column {t}.{c} reached the sink");
        }
    }
    // Nothing the policy does not list reached the sink.
    let sink_tables: BTreeSet<String> =
        duck_query::<String>(&path, "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'")
            .into_iter()
            .map(|mut r| r.remove(0))
            .collect();
    assert_eq!(sink_tables, policy.tables().map(str::to_owned).collect::<BTreeSet<_>>());

    // Pseudonymized, not copied: the sink holds the keyed HMAC of the source value.
    let ps = pseudonymizer();
    let emails = duck_query::<String>(&path, "SELECT email FROM customers ORDER BY id");
    assert_eq!(emails[0][0], ps.apply(b"ann@example.test"));
    let reg = duck_query::<String>(&path, "SELECT registration_number FROM organizations WHERE id = 1");
    assert_eq!(reg[0][0], ps.apply(b"HRB 12345"));
    let actors = duck_query::<String>(&path, "SELECT DISTINCT actor FROM kyc_case_transitions");
    assert_eq!(actors, vec![vec![ps.apply(b"operator:alice@fintrail.test")]]);
    // Streamed updates arrived: the revocation, the posted hold, the balances.
    assert_eq!(duck_i64(&path, "SELECT count(*) FROM api_tokens WHERE revoked_at IS NOT NULL"), 1);
    assert_eq!(
        duck_query::<String>(&path, "SELECT status FROM holds ORDER BY id"),
        vec![vec!["posted".to_string()], vec!["voided".to_string()]]
    );
    let balances: Vec<(i64, i64)> = src
        .query("SELECT id, balance_minor FROM fintrail.wallets ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let sink_balances: Vec<(i64, i64)> = duck_query::<i64>(&path, "SELECT id, balance_minor FROM wallets ORDER BY id")
        .into_iter()
        .map(|r| (r[0], r[1]))
        .collect();
    assert_eq!(sink_balances, balances);

    // Every view in analytics/views applied, has its shape, and returns rows.
    let views: BTreeSet<String> =
        duck_query::<String>(&path, "SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = 'main'")
            .into_iter()
            .map(|mut r| r.remove(0))
            .collect();
    let on_disk: BTreeSet<String> = fintrail_cdc::cli::VIEWS.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(views, on_disk);
    assert_eq!(on_disk, VIEW_SHAPES.iter().map(|(n, _)| (*n).to_owned()).collect::<BTreeSet<_>>());
    for (view, shape) in VIEW_SHAPES {
        assert_eq!(duck_columns(&path, "main", view), shape.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>());
        assert!(duck_i64(&path, &format!("SELECT count(*) FROM {view}")) > 0, "view {view} returns no row");
    }
    let q = |sql: &str| -> Vec<String> {
        duck_query::<String>(&path, sql).into_iter().map(|r| r.join(":")).collect::<Vec<_>>()
    };
    // deposit 10000 + transfer 300 + hold_post 100 + reversal 300, all EUR (one day unless the
    // test straddles midnight: compare the sums).
    assert_eq!(
        q("SELECT currency, CAST(sum(transfers) AS VARCHAR), CAST(sum(volume_minor) AS VARCHAR) FROM daily_transfer_volume GROUP BY currency"),
        vec!["EUR:4:10700"]
    );
    // 3 cases started; case 1 approved; case 2 went back to documents_submitted; case 3 too.
    // Time in state: a stay ends at the transition out of it (case 2's second documents_submitted
    // and case 3's have not ended).
    assert_eq!(
        q("SELECT state, CAST(cases_reached AS VARCHAR), CAST(cases_now AS VARCHAR) FROM kyc_funnel ORDER BY state"),
        vec!["approved:1:1", "documents_submitted:3:2", "in_review:2:0", "needs_resubmission:1:0", "started:3:0"]
    );
    assert_eq!(
        q("SELECT state, CAST(exits AS VARCHAR) FROM kyc_time_in_state ORDER BY state"),
        vec!["documents_submitted:2", "in_review:2", "needs_resubmission:1", "started:3"]
    );
    assert_eq!(
        duck_i64(&path, "SELECT count(*) FROM kyc_time_in_state WHERE median_secs IS NULL OR median_secs < 0 OR p90_secs < median_secs"),
        0
    );
    assert_eq!(
        q("SELECT outcome, CAST(sum(organizations) AS VARCHAR) FROM screening_outcomes GROUP BY outcome ORDER BY outcome"),
        vec!["clear:1", "cleared:1", "potential_match:1"]
    );
    assert_eq!(
        q("SELECT currency, CAST(active_wallets_30d AS VARCHAR), CAST(wallets AS VARCHAR) FROM active_wallets"),
        vec!["EUR:2:2"]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
