//! `fintrail trace`: every change traceable from task to commit to infrastructure. Which task each
//! commit belongs to, which commits touched sensitive paths (infra, migrations, roles and
//! permissions) and who approved them.
//!
//! Subcommands: `report [RANGE]` (task → commits → paths and path → tasks; text, JSON, Markdown;
//! `--audit` emits sensitive commits as JSON Lines audit events, `action = "infra.change"`, in the
//! platform's audit-event shape); `check [RANGE]` (exit 0, 1 with findings naming short sha and
//! subject, 2 usage or unreadable range); `install-hook` (commit-msg hook; never replaces a
//! different hook without `--force`, which keeps `commit-msg.bak`); `publish RANGE --tracker
//! clickup|github [--dry-run]`; hidden `check-message FILE` (what the hook runs).
//!
//! # Layout and where the invariants are enforced
//! - `message`: the single function `references()` decides task ids, approvers and the reverted
//!   sha of a message; `check`, `report` and the hook all use it. Trailers are parsed like git
//!   (last paragraph, never the subject).
//! - `trace`: the rules, in `evaluate()`: a task is required; sensitive paths (both sides of a
//!   rename) need an approver trailer whose email is not the author's; clean merges (empty dense
//!   combined diff) are exempt, merges with their own changes are checked on those; a revert
//!   without a reference inherits the tasks of the reverted commit, never its approval; shallow
//!   boundary commits: paths unknown, a warning.
//! - `git`: runs git with fixed `-c` settings and `--end-of-options` (a range can never be an
//!   option); parses the `-z` output as a token stream, so paths may hold any byte but NUL; paths
//!   stay bytes.
//! - `glob`: byte-level globs (`*`, `?`, whole-segment `**`), validated.
//! - `config`: defaults → optional `trace.toml` at the repository root or `--config` → flags;
//!   unknown fields refused; bounded sizes and counts.
//! - `tracker`: `Tracker` trait, ClickUp and GitHub adapters. Requests are planned purely
//!   (`plan()`, shown by `--dry-run`), then sent: the token is a `Secret` (Debug `***`),
//!   per-attempt timeout, at most 3 attempts, 429 honours `Retry-After` up to a cap, 5xx and
//!   transport errors back off, a timed-out POST is not repeated (no duplicate comments),
//!   401/403/404 never retried, ids validated before they enter a URL path.
//! - `hook`: the script and an atomic install (write beside, rename); honours `core.hooksPath`.
//!
//! # Dependencies
//! No other fintrail crate: the audit record shape is reproduced as JSON, so this crate stays at
//! the edge and builds fast. `clap`, `serde`/`serde_json`, `anyhow`, `regex` (task patterns),
//! `toml` 0.9, `ureq` 3 without default features (feature `tls` = rustls, on by default). The
//! `git` program runs as a subprocess, no git library: git is the reference implementation and
//! `-z` gives raw-byte paths.
//!
//! # Tests
//! Real temporary git repositories (identity and dates from `GIT_*`, `GIT_CONFIG_GLOBAL=/dev/null`)
//! driven through the real `fintrail-trace` program (a `[[bin]]` of this crate, also what the hook
//! runs): references, sensitive paths with and without approver, self-approval, clean and
//! conflicted merges, reverts, renames into `infra/`, non-UTF-8 paths, empty range, unborn
//! repository, shallow clone, config file, exit codes; the hook with a real `git commit`. Trackers
//! against fake ClickUp/GitHub servers on 127.0.0.1 (401, 404, 429 + Retry-After, 5xx, timeouts,
//! refused connections, malformed JSON). Globs and message parsing are proptested.
//!
//! # Bench
//! `cargo run -p fintrail-trace --example bench_report --release` (docs/perf.md).

pub mod bench;
pub mod cli;
pub mod config;
pub mod git;
pub mod glob;
pub mod hook;
pub mod message;
pub mod report;
pub mod trace;
pub mod tracker;
