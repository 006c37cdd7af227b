//! One source of truth for what leaves the database: Datastream's column list
//! (`analytics/datastream.json`, read by `infra/envs/<env>` as the stream's `include_objects`)
//! must be exactly the columns the replication policy (`analytics/replication.toml`, which
//! `fintrail cdc` enforces) lets out as they are. Datastream cannot pseudonymize, so a
//! pseudonymized column must not be in it; a kept column missing from it is a drift too.

use fintrail_cdc::policy::{Decision, Policy, DEFAULT_POLICY_TOML};
use std::collections::BTreeMap;

const DATASTREAM_JSON: &str = include_str!("../../../analytics/datastream.json");

/// The Datastream list the policy implies: every table's `keep` columns, sorted.
fn expected(policy: &Policy) -> BTreeMap<String, Vec<String>> {
    policy
        .tables()
        .map(|t| {
            let mut keep: Vec<String> =
                policy.columns(t).filter(|c| policy.decide(t, c) == Decision::Keep).map(str::to_owned).collect();
            keep.sort();
            (t.to_owned(), keep)
        })
        .filter(|(_, keep)| !keep.is_empty())
        .collect()
}

fn declared(json: &str) -> (String, BTreeMap<String, Vec<String>>) {
    let v: serde_json::Value = serde_json::from_str(json).expect("analytics/datastream.json is JSON");
    let schema = v["schema"].as_str().expect("a schema").to_owned();
    let tables = serde_json::from_value(v["tables"].clone()).expect("tables: table -> [column]");
    (schema, tables)
}

#[test]
fn datastream_replicates_exactly_the_columns_the_policy_keeps() {
    let policy = Policy::parse(DEFAULT_POLICY_TOML).unwrap();
    let (schema, tables) = declared(DATASTREAM_JSON);
    assert_eq!(schema, policy.schema, "Datastream reads the policy's schema");
    let want = expected(&policy);
    assert!(
        tables == want,
        "analytics/datastream.json disagrees with analytics/replication.toml; its tables should be:\n{}",
        serde_json::to_string_pretty(&want).unwrap()
    );
    for (table, columns) in &tables {
        for column in columns {
            assert_eq!(
                policy.decide(table, column),
                Decision::Keep,
                "{table}.{column} would leave the database unpseudonymized"
            );
        }
    }
}

#[test]
fn a_pseudonymized_or_unlisted_column_in_the_list_is_caught() {
    let policy = Policy::parse(DEFAULT_POLICY_TOML).unwrap();
    let mut tables = expected(&policy);
    // customers.email is pseudonymized by the policy; Datastream would copy it in clear.
    tables.get_mut("customers").expect("customers is replicated").push("email".to_owned());
    assert_ne!(tables, expected(&policy));
    assert_eq!(policy.decide("customers", "email"), Decision::Pseudonymize);
    assert!(matches!(policy.decide("customers", "no_such_column"), Decision::Withhold { listed: false }));
}
