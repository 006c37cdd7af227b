//! The report benchmark: a generated repository with many commits, timed `report`.
//!
//! The repository is written with one `git fast-import` stream (thousands of `git commit`
//! calls would take minutes). Every 5th commit touches `infra/`, every 7th lacks a task,
//! every 50th is a merge of a side branch, so the rules all do work.
//!
//! Baseline: the bare `git log` we run (same flags, output discarded), so `ratio` is
//! git's own time ÷ our total time (git + parsing + rules + rendering); 1.0 would mean
//! our work on top of git is free.

use anyhow::{bail, Context, Result};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The most commits the benchmark will generate (bounds disk and time).
pub const MAX_COMMITS: usize = 1_000_000;

fn git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir).env("GIT_CONFIG_NOSYSTEM", "1").env("GIT_CONFIG_GLOBAL", "/dev/null").stdin(Stdio::null());
    c
}

/// Writes a repository of `commits` commits at `dir` with `git fast-import`.
pub fn generate_repo(dir: &Path, commits: usize) -> Result<()> {
    if commits == 0 || commits > MAX_COMMITS {
        bail!("commits must be in 1..={MAX_COMMITS}");
    }
    std::fs::create_dir_all(dir)?;
    let st = git(dir).args(["init", "-q", "-b", "main"]).status()?;
    if !st.success() {
        bail!("git init failed");
    }
    let mut child =
        git(dir).args(["fast-import", "--quiet", "--done"]).stdin(Stdio::piped()).spawn().context("git fast-import")?;
    {
        let mut stdin = std::io::BufWriter::new(child.stdin.take().context("stdin")?);
        let t0: u64 = 1_700_000_000;
        let mut mark_of_main: Option<usize> = None;
        for i in 1..=commits {
            let task = if i % 7 == 0 { String::new() } else { format!("\n\nTask: CU-{:x}", 0x1000 + i / 3) };
            let approver = if i % 5 == 0 { "\nReviewed-by: Rita <rita@example.com>" } else { "" };
            let msg = format!("change {i}{task}{approver}\n");
            let path = if i % 5 == 0 {
                format!("infra/modules/m{}/main.tf", i % 12)
            } else {
                format!("crates/c{}/src/f{}.rs", i % 9, i % 41)
            };
            let side = i % 50 == 0 && i > 2;
            if side {
                // A side commit on branch `side`, parented on main's previous commit.
                writeln!(
                    stdin,
                    "commit refs/heads/side\nmark :{}\ncommitter Sid <sid@example.com> {} +0000",
                    commits + i,
                    t0 + i as u64
                )?;
                let side_msg = format!("side work {i}\n\nTask: CU-side{i}\n");
                writeln!(stdin, "data {}\n{side_msg}", side_msg.len())?;
                if let Some(m) = mark_of_main {
                    writeln!(stdin, "from :{m}")?;
                }
                writeln!(stdin, "M 100644 inline docs/side{i}.md\ndata 5\nside\n")?;
            }
            writeln!(
                stdin,
                "commit refs/heads/main\nmark :{i}\ncommitter Ann <ann@example.com> {} +0000",
                t0 + i as u64
            )?;
            writeln!(stdin, "data {}\n{msg}", msg.len())?;
            if let Some(m) = mark_of_main {
                writeln!(stdin, "from :{m}")?;
            }
            if side {
                writeln!(stdin, "merge :{}", commits + i)?;
            }
            let content = format!("// {i}\n");
            writeln!(stdin, "M 100644 inline {path}\ndata {}\n{content}", content.len())?;
            mark_of_main = Some(i);
        }
        writeln!(stdin, "done")?;
        stdin.flush()?;
    }
    let st = child.wait()?;
    if !st.success() {
        bail!("git fast-import failed");
    }
    let st = git(dir).args(["reset", "-q", "--hard", "main"]).status()?;
    if !st.success() {
        bail!("git reset failed");
    }
    Ok(())
}

/// Generates a repository with `commits` commits in a temporary directory, times
/// `report` (text and JSON) on it against the bare `git log` baseline, prints a table,
/// and ends with `ratio: X` (baseline ÷ ours; higher is better, 1.0 is the ceiling).
pub fn run_report_bench(commits: usize) -> Result<()> {
    let dir: PathBuf = std::env::temp_dir().join(format!("fintrail-trace-bench-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let t = Instant::now();
    generate_repo(&dir, commits)?;
    let gen_ms = t.elapsed().as_millis();
    let result = measure(&dir, commits, gen_ms);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(dir: &Path, commits: usize, gen_ms: u128) -> Result<()> {
    let repo = crate::git::Repo::discover(dir)?;
    let config = crate::config::Config::default();
    // Warm the page cache once, so neither side pays for the first read.
    let _ = repo.log("HEAD")?;
    let runs = 3;
    let mut base_s = f64::MAX;
    let mut ours_s = f64::MAX;
    let mut text_len = 0;
    let mut traced = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let out = git(dir)
            .args([
                "log",
                "-z",
                "--root",
                "-M",
                "--name-status",
                "--diff-merges=dense-combined",
                "--format=%x1e%H%x00%P%x00%an%x00%ae%x00%aI%x00%cI%x00%B",
                "HEAD",
                "--",
            ])
            .stdout(Stdio::piped())
            .output()?;
        if !out.status.success() {
            bail!("git log failed");
        }
        base_s = base_s.min(t.elapsed().as_secs_f64());

        let t = Instant::now();
        let analysis = crate::trace::analyze(&repo, "HEAD", &config, false)?;
        let text =
            crate::report::render_report(&analysis, &config, crate::report::Format::Text, 20, &Default::default());
        let json =
            crate::report::render_report(&analysis, &config, crate::report::Format::Json, 20, &Default::default());
        ours_s = ours_s.min(t.elapsed().as_secs_f64());
        text_len = text.len() + json.len();
        traced = analysis.commits.len();
    }
    if traced < commits {
        bail!("expected at least {commits} commits, traced {traced}");
    }
    println!("fintrail trace report benchmark ({traced} commits, generated in {gen_ms} ms, best of {runs})");
    println!("{:<42} {:>10}", "what", "seconds");
    println!("{:<42} {:>10.3}", "baseline: git log -z --name-status", base_s);
    println!("{:<42} {:>10.3}", "ours: analyze + text + json report", ours_s);
    println!("report output: {text_len} bytes");
    println!("ratio: {:.3}", base_s / ours_s);
    Ok(())
}
