//! `fintrail iam`: least-privilege and privilege-escalation analysis of OpenTofu/Terraform code,
//! offline. Reads HCL (or a `tofu show -json` plan, or an exported `get-iam-policy` JSON), works
//! out the effective IAM bindings of each environment without deploying anything, and reports:
//! rules with stable ids (IAM001–IAM015, EXC001–EXC003, SHAPE001–SHAPE007), escalation paths
//! between identities, policy exceptions from a checked-in registry, and the module contract
//! (`iam shape`). Output: text, JSON or SARIF 2.1.0. Exit 0 clean, 1 findings, 2 usage or input
//! error. Never calls a cloud.
//!
//! # Pipeline (one module per step)
//! `source` (parse with byte spans → file:line; newlines Terraform ignores but hcl-edit rejects
//! are joined on a second attempt) → `eval` (lazy, memoised static evaluation: tfvars,
//! defaults, locals, local modules, `count`/`for_each`, `dynamic`, ~60 functions, computed
//! attributes) → `model` (the inventory: bindings, custom roles, service accounts, keys, org
//! policies, deny rules, group memberships, VMs, workloads with the identity they run as,
//! workload identity providers, parents) → `roles` (catalogue, custom roles, dangerous
//! permissions) + `catalogue` (the escalation methods that run code as an attached identity,
//! as tables: per managed service its resources, identity attribute, create / update /
//! run-existing permissions and whether updates check actAs; ways into a VM; resource-level
//! policy writes) → `analyze` (rules, IAM conditions decided or marked conditional, exceptions
//! in scope) + `graph` (edges minus what deny policies forbid, shortest witness paths) →
//! `report`.
//!
//! # Invariants
//! - Unknown values never crash: `Value::Unknown` carries a symbolic rendering; bindings known
//!   only after a plan are listed (IAM013, info). Every loop and recursion has a limit (`MAX_*`).
//! - HCL the parser rejects is a diagnostic with file:line → exit 2.
//! - A malformed role catalogue is an error, never a partial catalogue.
//! - Exceptions are valid only when complete and unexpired (`--today` / `FINTRAIL_TODAY`);
//!   expired, unused and malformed ones fail. `exception add` validates, refuses duplicates and
//!   past dates, appends without rewriting, reads back before an atomic rename.
//! - An escalation path is reported only when the target has privileges the source lacks, or
//!   reaches control of an organization, folder, project or policy-bearing resource; one
//!   shortest witness per pair. A step whose binding's condition cannot be decided makes the
//!   path `conditional`; a permission a deny policy in the code forbids gives no step.
//! - Checking one root of a folder of roots judges only the exceptions that concern it; the
//!   others are out of scope (a note), not unused.
//! - A dangling `*.auto.tfvars` symlink is a warning: defaults apply, the exit code is the
//!   findings'.
//! - Custom roles are per root: one environment's roles never leak into another's.
//!
//! # Choices
//! hcl-edit for spans (hcl-rs's tree has none), hcl-rs's tree to evaluate; our own evaluator
//! because hcl-rs's has no notion of unknown values. Role catalogue: `--roles DIR` /
//! `FINTRAIL_IAM_ROLES`, else `shared/data/gcp-iam-roles` found walking up, else a built-in subset
//! of ~40 roles (`--builtin-roles`; the tests use it). Exceptions registry: `--exceptions FILE`,
//! else `policy/exceptions.toml` or `infra/policy/exceptions.toml` walking up. A folder of
//! environments (`infra/envs`) is one root per environment, exceptions judged across all.
//!
//! # Dependencies
//! No other fintrail crate; no network. hcl-edit 0.10, hcl-rs 0.20, petgraph 0.8, serde/serde_json,
//! toml 0.9, clap, anyhow, thiserror, sha2 + hex (`sha256()` in HCL). Dates: a small `date` module.
//!
//! # Tests
//! `tests/fixtures/`: 128 roots with an `expected.json` each: 55 escalation methods, each with
//! a positive fixture and a negative one (`negative_of`: the same shape lacking one
//! permission or aimed at an unrelated resource), plus front-end, deny-policy and condition
//! cases; `tests/fixtures.rs` fails below 45 methods or on any finding in a negative.
//! `tests/syntax/` is a corpus of valid HCL shapes from public roots (`tests/syntax.rs`).
//! `tests/cli.rs` drives `cli::run` end to end; a test with the full catalogue is skipped,
//! with a message, when the shared data is absent. Proptest: arbitrary HCL never panics; the
//! newline joining never moves a line.
//!
//! # Bench
//! `fintrail bench iam`: 521 generated files, ours vs Checkov in the same run, with the number
//! of escalation paths each finds (docs/perf.md).

pub mod analyze;
pub mod bench;
pub mod catalogue;
pub mod cli;
pub mod date;
pub mod eval;
pub mod exceptions;
pub mod graph;
pub mod model;
pub mod report;
pub mod roles;
pub mod shape;
pub mod source;
pub mod value;
