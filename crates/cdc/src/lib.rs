//! `fintrail cdc` / `fintrail analytics` / the pipeline inside `fintrail up`: PostgreSQL logical
//! replication (pgoutput) into an analytics store, a DuckDB file (embedded default) or BigQuery
//! (production), with no measurable impact on the transactional database, exactly-once effect,
//! and a default-deny column policy (`analytics/replication.toml`).
//!
//! # Modules and the invariants they enforce
//! - `pgoutput`: our decoder/encoder of protocol v1 (docs/adr/0002): bounds-checked, never panics
//!   on bad bytes, limits on columns and relations.
//! - `policy`: `decide(table, column)` → keep / pseudonymize / withhold. **Default deny**: anything
//!   not listed is withheld. Pseudonyms are HMAC-SHA256 with a key ≥ 32 bytes
//!   (`FINTRAIL_PSEUDONYMIZE_KEY` or `FINTRAIL_HOME/keys/pseudonymize.key`, owner-only). Policy
//!   columns missing from the source are reported (a typo would silently withhold the real one).
//! - `model::Projection`: the only path from a source tuple to sink cells; a withheld column has
//!   no slot, so it cannot reach any sink.
//! - `source`: `setup` (as the admin, `SET LOCAL ROLE fintrail_owner`, one transaction) makes
//!   the database match the policy: the publication holds exactly the policy's tables that
//!   exist and have a replica identity the policy lets out (otherwise UPDATE/DELETE would fail
//!   on the primary; REPLICA IDENTITY FULL with a withheld column is skipped for the same
//!   reason), each with a **column list** of the let-out columns, so a withheld column is never
//!   decoded for the walsender; the replicator gets **column-level** SELECT on exactly those
//!   columns (plus `ctid`, for the snapshot's page ranges) after a `REVOKE ALL` on every table
//!   of the schema. Idempotent; a changed policy re-syncs both; a column added by a migration
//!   is in neither (default deny) until the policy names it and setup runs. Also: the slot,
//!   heartbeats, slot statistics, and reports of foreign slots and other publications.
//! - `snapshot`: COPY table by table in CTID page ranges, each chunk one sink transaction with its
//!   "done" mark; only the policy's columns are selected, so withheld columns never leave the
//!   primary. The slot is created with `CREATE_REPLICATION_SLOT ... (SNAPSHOT 'export')` on the
//!   replication session: only that form exports a snapshot tied to the slot's consistent point,
//!   so COPY + stream are complete without overlap. Resumed after a crash under a new snapshot,
//!   the stream replays as upserts and converges.
//! - `sink` (`Sink` trait; `sink::duck`, `sink::bigquery`): DuckDB keeps current-state tables and
//!   an append-only history (`_lsn`, `_seq`, `_op`, `_commit_ts`); `commit(state)` writes data and
//!   the LSN in **one DuckDB transaction**. BigQuery (REST over ureq): the net rows are staged with
//!   `insertAll` under a random batch id, then **one multi-statement transaction** (`jobs.query`)
//!   checks the state row's generation, MERGEs each part by key and writes the state row (LSN,
//!   generation + 1): a kill anywhere re-applies without duplicates, and a stale writer (a
//!   restarted one while the killed one's job still runs) is refused. A change that cannot be
//!   applied (unchanged TOAST value for an unknown row, a type change) stops the pipeline:
//!   never silent loss.
//! - `pipeline`: the stream loop, a state-machine struct (`on_begin`, `on_change`, `on_commit`,
//!   `flush`, `shutdown`). A sink transaction holds whole source transactions, or parts of one
//!   large one (bounded batches, committed at its source commit): memory is bounded. The LSN is
//!   confirmed only after the sink committed (keepalives only when nothing is pending);
//!   transactions below the stored LSN are skipped. Small transactions share a sink commit
//!   (≤ 200 ms or 50 000 changes). On stop, complete transactions are committed; the open one is
//!   resent. Receiving and decoding run on one thread (`pipeline::on_own_thread`: the transport
//!   and the loop on a single-threaded runtime), the sink's writes on another (`apply`), behind
//!   a queue bounded in batches and bytes: the receiving side waits when it is full, and an LSN
//!   is confirmed only once the sink thread committed it.
//! - `status`: `FINTRAIL_HOME/cdc-status.json`, written atomically.
//! - `analytics`: read-only queries while the pipeline writes (one writer; its socket), the
//!   guard every query passes (one SELECT, READ ONLY transaction, no file access, row and time
//!   limits) and the client `fintrail analytics query` and the console use.
//!
//! Relation messages carry only the published columns, tuples likewise: `Projection` maps by
//! name, so a shorter relation is just a narrower shape (the sink keeps the columns it has).
//! pgoutput reads the publication under the historic catalog snapshot: a change is sent with
//! the column list in force when it was committed. Hence a column a migration adds reaches
//! analytics only from the `cdc setup` after it (the pipeline runs setup at each start; run
//! `fintrail cdc setup` right after `db migrate`, before writers use the column): values
//! written in between stay NULL in the sink until a `cdc reset` re-snapshots.
//!
//! # Known limit: what the REPLICATION attribute still allows
//! Grants and column lists bound what the replicator can SELECT and what pgoutput sends *for
//! our publication*. A holder of the replicator credential can still, because PostgreSQL has
//! no finer privilege than REPLICATION (no per-plugin or per-publication grant):
//! - create a slot with another output plugin (`test_decoding` ships with PostgreSQL; any
//!   plugin installed on the server), over the replication protocol or with
//!   `pg_create_logical_replication_slot`, and decode **every column of every table** of the
//!   database, published or not (`tests/least_privilege.rs` performs it and pins it);
//! - stream any other publication in the database (publications are not access-controlled);
//! - drop or advance our slot (the pipeline then stops and asks for a reset: loud, not silent);
//! - see that a row changed when only a withheld column did (an UPDATE is sent with the
//!   let-out columns), and read pseudonymized columns in clear: they are let out and hashed by
//!   the pipeline, so they cross the wire as they are.
//!
//! Mitigations in place: physical replication (a copy of every file) is refused by pg_hba
//! (`fintrail_db::hba`); only the replicator has REPLICATION (the admin is the private
//! cluster's superuser); `log_replication_commands = on` logs each CREATE_REPLICATION_SLOT
//! with its plugin; `setup` reports slots with another plugin and other publications. Options
//! not taken: having the admin create the slot does not help (REPLICATION can create slots
//! anyway); `max_replication_slots` at exactly the slots in use turns "create another" into
//! "drop ours first" (loud), but the test cluster needs many slots; revoking EXECUTE on the SQL
//! decoding functions needs a superuser and leaves the replication protocol open. So the
//! replicator credential is held like the owner's: only the CDC service has it.
//!
//! TLS (issue #14): the replication connection (pgwire-replication, rustls on ring) and the SQL
//! ones (`fintrail_db::Database`) use the database's TLS: `verify-full` against the private
//! cluster's CA, or `FINTRAIL_DB_SSLMODE` / `FINTRAIL_DB_SSLROOTCERT` for an external server
//! (`source::replication_tls`). The private cluster's pg_hba accepts TLS only. pgwire-replication
//! installs rustls's ring provider as the process default and builds its config from it.
//!
//! Sessions pin `TimeZone=UTC`, ISO styles, `extra_float_digits=3` (canonical text). Heartbeats:
//! `pg_logical_emit_message`, EXECUTE is PUBLIC, so the replicator needs no extra privilege.
//! Added source columns are added to the sink; dropped ones stay (NULL); withheld ones go.
//!
//! Commands: `cdc run | status | setup | reset --yes | policy`; `analytics query "SQL"`: one
//! read-only SELECT, bounded in rows and time. DuckDB allows one process per file, so the
//! pipeline holding it answers queries on `<file>.sock` (`analytics`); with no pipeline, the file
//! is opened read-only.
//!
//! BigQuery: `cdc run --sink bigquery` (or `FINTRAIL_CDC_SINK=bigquery`, as the dev environment's
//! Cloud Run service sets it) writes into `FINTRAIL_BIGQUERY_PROJECT`.`FINTRAIL_BIGQUERY_DATASET`
//! as the service account whose token the metadata server hands out (`GCE_METADATA_HOST`
//! overrides its host); `FINTRAIL_BIGQUERY_ENDPOINT` points it at an emulator (no credentials).
//! It needs `bigquery.jobs.create` on the project and, on the dataset, tables.create / get /
//! getData / update / updateData (infra's `bq_replica_write` role). `cdc reset --sink bigquery` deletes
//! its state row; the next run empties the tables and re-snapshots. Staging and prod replicate
//! with Datastream instead (`cdc_mode`).
//!
//! # Dependencies
//! `fintrail-db` (cluster, credentials per role, home, harness), `fintrail-domain` (`DbRole`);
//! `pgwire-replication` 0.5 (transport, `scram`, no TLS), `tokio-postgres`, `duckdb` linked to the
//! official prebuilt `libduckdb.so` (`DUCKDB_LIB_DIR`; feature `bundled` compiles it), `hmac` +
//! `sha2`, `toml`, `indicatif`, `ureq` (rustls; BigQuery's REST API). Nothing but the binary
//! depends on this crate.
//!
//! # Tests
//! Unit: decoder (proptests), policy, sink, chunk plans, views, BigQuery configuration and token.
//! `bigquery.rs`: the BigQuery sink against bqemulator (installed by `./dev setup`, started and
//! killed by each test through `tests/bqemulator/launch.py`): types, TOAST, key changes, replay,
//! a stale writer refused, added and withheld columns, reset.
//! `streaming.rs`: the real cluster end to end. `real_schema.rs`: the checked-in policy and views
//! against the real migrations (every policy column exists; a misspelt one is reported).
//! `crash.rs`: ~22 kills during snapshot and streaming under a concurrent writer, then counts,
//! checksums, no duplicates, withheld column absent; on DuckDB (task aborted) and on BigQuery
//! (a child process killed with SIGKILL). `least_privilege.rs`: the attacks with
//! the replicator credential (withheld columns refused by SQL; a raw `pg_recvlogical` pgoutput
//! stream never holds a withheld value, against a control publication that does), a policy
//! change re-syncing grants and column lists, pg_hba refusing physical replication, and the
//! known limit above, performed.

pub mod analytics;
pub mod bench;
pub mod cli;
pub mod model;
pub mod pgoutput;
pub mod pipeline;
pub mod policy;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod status;

pub use cli::{run_analytics, run_cdc};

/// Used by `fintrail up`: the pipeline into `FINTRAIL_HOME/analytics.duckdb` with the
/// checked-in policy, until `shutdown`; then it commits what is complete and confirms it.
pub async fn run_pipeline(
    ctx: &fintrail_db::Context,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let policy = policy::Policy::load(None)?;
    cli::run_with(ctx, &policy, &ctx.home.analytics_db(), pipeline::Options::default(), shutdown).await
}
