//! `fintrail jobs` as real processes against the real database: two concurrent
//! `jobs run hold-expiry` release each hold exactly once; a `kill -9` in the middle of a run,
//! then a rerun, leaves every hold released once and `ledger check` and `audit verify` intact.
//! Holds are dated in the past (`fixtures::overdue_holds`): nothing waits for a clock.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fintrail_db::testing::{fresh_db, TestDb};
use fintrail_db::DbRole;
use fintrail_tooling::fixtures;

struct Env {
    db: TestDb,
    home: PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

async fn env(tag: &str) -> Env {
    let db = fresh_db().await;
    let home = std::env::temp_dir().join(format!("fintrail-jobs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    Env { db, home }
}

impl Env {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fintrail"));
        cmd.args(args)
            .envs(self.db.child_env(DbRole::Admin))
            .env("FINTRAIL_APP_PASSWORD", self.db.params(DbRole::App).password.unwrap_or_default())
            // The audit-checkpoint job writes as the sequencer's role (migration 0034).
            .env("FINTRAIL_SEQUENCER_PASSWORD", self.db.params(DbRole::Sequencer).password.unwrap_or_default())
            .env("FINTRAIL_HOME", &self.home)
            .env("FINTRAIL_LOG_FORMAT", "json")
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }
    fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args).spawn().expect("spawn fintrail")
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run fintrail");
        assert_ok(args, &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    async fn count(&self, sql: &str) -> i64 {
        let c = self.db.connect(DbRole::App).await.expect("app");
        c.query_one(sql, &[]).await.expect(sql).get(0)
    }
    /// Exactly-once, from the database: every hold expired, one `ledger.hold.expired` event
    /// each, nothing left reserved, and `fintrail ledger check` passes.
    async fn assert_released_once(&self, wallet: i64, holds: usize) {
        assert_eq!(self.count("SELECT count(*) FROM fintrail.holds WHERE status = 'expired'").await, holds as i64);
        let events = "SELECT count(*) FROM fintrail.audit_events WHERE action = 'ledger.hold.expired'";
        assert_eq!(self.count(events).await, holds as i64, "one expiry event per hold, never two");
        let distinct = "SELECT count(DISTINCT subject) FROM fintrail.audit_events WHERE action = 'ledger.hold.expired'";
        assert_eq!(self.count(distinct).await, holds as i64);
        let held = format!("SELECT held_minor FROM fintrail.wallets WHERE id = {wallet}");
        assert_eq!(self.count(&held).await, 0);
        self.ok(&["ledger", "check"]);
    }
}

fn assert_ok(args: &[&str], out: &Output) {
    assert!(
        out.status.success(),
        "fintrail {}: {:?}\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn holds(e: &Env, n: usize) -> (i64, Vec<i64>) {
    let w = fixtures::funded_wallets(&e.db, 2, 10 * n as i64).await.expect("wallets");
    let h = fixtures::overdue_holds(&e.db, w[0], w[1], n, 10).await.expect("holds");
    (w[0], h)
}

#[tokio::test]
async fn two_concurrent_hold_expiry_processes_release_each_hold_exactly_once() {
    let e = env("race").await;
    let (wallet, h) = holds(&e, 300).await;
    let args = ["jobs", "run", "hold-expiry", "--batch-max", "1000"];
    // Both started before either is waited for: two live processes racing for the same holds.
    let (a, b) = (e.spawn(&args), e.spawn(&args));
    let outs = [a.wait_with_output().expect("a"), b.wait_with_output().expect("b")];
    let mut expired = 0;
    for out in &outs {
        assert_ok(&args, out);
        let line = String::from_utf8_lossy(&out.stdout).into_owned();
        // Either process may win the job's lock; the other is busy, or finds nothing left.
        assert!(line.contains("job hold-expiry: ok") || line.contains("job hold-expiry: busy"), "{line}");
        if let Some(n) = line.split("\"expired\":").nth(1) {
            expired += n.trim_end_matches(|c: char| !c.is_ascii_digit()).parse::<i64>().expect("count");
        }
    }
    assert_eq!(expired, h.len() as i64, "the two runs' counts add up to each hold once: {outs:?}");
    e.assert_released_once(wallet, h.len()).await;
}

#[tokio::test]
async fn kill_9_mid_job_then_rerun_leaves_ledger_check_and_audit_verify_intact() {
    let e = env("kill").await;
    let (wallet, h) = holds(&e, 2000).await;
    // A signed checkpoint before the crash, so `audit verify` also checks the chain across it.
    e.ok(&["jobs", "run", "audit-checkpoint"]);
    let mut child = e.spawn(&["jobs", "run", "hold-expiry", "--batch-max", "5000"]);
    // Wait (bounded poll) for the phase the kill targets: holds are being released.
    let deadline = Instant::now() + Duration::from_secs(60);
    let released = loop {
        let n = e.count("SELECT count(*) FROM fintrail.holds WHERE status = 'expired'").await;
        if n >= 50 {
            break n;
        }
        assert!(Instant::now() < deadline, "the job never started releasing holds");
        assert!(child.try_wait().expect("child").is_none(), "the job ended before it could be killed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix: kill -9.
    let status = child.wait().expect("reaped");
    assert!(!status.success(), "killed, not finished: {status:?}");
    let at_kill = e.count("SELECT count(*) FROM fintrail.holds WHERE status = 'expired'").await;
    assert!(at_kill >= released && at_kill < h.len() as i64, "killed mid-run: {at_kill} of {}", h.len());
    // The killed run left its row running and no finish event; its lock died with it.
    assert_eq!(
        e.count("SELECT count(*) FROM fintrail.job_runs WHERE job = 'hold-expiry' AND outcome = 'running'").await,
        1
    );
    let list = e.ok(&["jobs", "list"]);
    assert!(list.lines().any(|l| l.starts_with("hold-expiry") && l.contains("interrupted")), "{list}");

    let out = e.ok(&["jobs", "run", "hold-expiry", "--batch-max", "5000"]);
    assert!(out.contains("job hold-expiry: ok"), "{out}");
    assert!(out.contains(&format!("\"expired\":{}", h.len() as i64 - at_kill)), "the rerun resumed: {out}");
    e.assert_released_once(wallet, h.len()).await;
    e.ok(&["jobs", "run", "audit-checkpoint"]);
    let verified = e.ok(&["audit", "verify"]);
    assert!(verified.contains("audit trail intact"), "{verified}");
    let list = e.ok(&["jobs", "list"]);
    assert!(list.lines().any(|l| l.starts_with("hold-expiry") && l.contains(" ok ")), "{list}");
}

/// Bad input to `fintrail jobs run` is a usage error (exit 2) that names what is accepted, and
/// runs nothing: no job run is recorded and no job event is written.
#[tokio::test]
async fn bad_job_names_and_limits_are_usage_errors_that_run_nothing() {
    let e = env("bad-input").await;
    let unknown = e.cmd(&["jobs", "run", "hold-expiryy"]).output().expect("run");
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("unknown job") && stderr.contains("hold-expiry"), "names the jobs: {stderr}");
    for args in [
        &["jobs", "run"][..],
        &["jobs", "run", "hold-expiry", "--all-due"][..],
        &["jobs", "run", "hold-expiry", "--batch-max", "0"][..],
        &["jobs", "run", "hold-expiry", "--deadline-secs", "99999"][..],
        &["jobs", "run", "hold-expiry", "--batch-max", "ten"][..],
    ] {
        let out = e.cmd(args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    let runs = "SELECT count(*) FROM fintrail.job_runs";
    assert_eq!(e.count(runs).await, 0, "nothing ran");
    assert_eq!(e.count("SELECT count(*) FROM fintrail.audit_events WHERE action LIKE 'job.%'").await, 0);
}
