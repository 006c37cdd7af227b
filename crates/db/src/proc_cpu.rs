//! CPU seconds of processes and of the private cluster, read from Linux's `/proc`, for the
//! benchmarks' "where the time goes" lines (the one reader both `fintrail-cdc` and
//! `fintrail-tooling` use). `None` where `/proc` cannot tell (another OS, a process gone).

use crate::home::Home;

/// Clock ticks per second of `/proc/*/stat` times (`USER_HZ`: 100 on every Linux target).
pub const TICKS_PER_SEC: f64 = 100.0;

/// A process's CPU so far: its own user + system seconds, the seconds of the children it
/// reaped, and its parent's pid. `pid` is a number or `"self"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcCpu {
    pub own_secs: f64,
    pub reaped_secs: f64,
    pub ppid: u32,
}

/// Reads `/proc/{pid}/stat`.
pub fn proc_cpu(pid: &str) -> Option<ProcCpu> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?).map(|(_, cpu)| cpu)
}

/// A `stat` line: the command (up to its closing parenthesis) and the CPU fields.
fn parse_stat(text: &str) -> Option<(&str, ProcCpu)> {
    // After the command's closing parenthesis: state, ppid, ..., utime (12th), stime,
    // cutime, cstime.
    let (head, rest) = text.rsplit_once(") ")?;
    let rest: Vec<&str> = rest.split(' ').collect();
    let tick = |i: usize| rest.get(i).and_then(|v| v.parse::<f64>().ok()).map(|t| t / TICKS_PER_SEC);
    let cpu = ProcCpu {
        own_secs: tick(11)? + tick(12)?,
        reaped_secs: tick(13)? + tick(14)?,
        ppid: rest.get(1)?.parse().ok()?,
    };
    Some((head, cpu))
}

/// User + system CPU seconds of this process's threads named `name` (`/proc/self/task`).
pub fn threads_secs(name: &str) -> Option<f64> {
    let mut secs = 0.0;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if let Some((_, cpu)) = parse_stat(&text).filter(|(head, _)| head.ends_with(name)) {
            secs += cpu.own_secs;
        }
    }
    Some(secs)
}

/// The private cluster's postmaster under `home`, if it runs.
pub fn postmaster(home: &Home) -> Option<u32> {
    match crate::cluster::Cluster::new(home.clone()).ok()?.status().ok()? {
        crate::cluster::Status::Running { pid, .. } => Some(pid),
        _ => None,
    }
}

/// Calls `each(pid, cpu)` for every live child of `parent`.
pub fn for_each_child(parent: u32, mut each: impl FnMut(&str, ProcCpu)) -> Option<()> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        if let Some(cpu) = proc_cpu(pid).filter(|c| c.ppid == parent) {
            each(pid, cpu);
        }
    }
    Some(())
}

/// Every CPU second the cluster has used so far: the postmaster, the children it reaped and
/// its live children (backends, walsenders, background workers).
pub fn cluster_secs(postmaster: u32) -> Option<f64> {
    let pm = proc_cpu(&postmaster.to_string())?;
    let mut total = pm.own_secs + pm.reaped_secs;
    for_each_child(postmaster, |_, c| total += c.own_secs)?;
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_itself_as_a_child_of_its_parent() {
        let me = proc_cpu("self").expect("/proc on Linux");
        assert!(me.own_secs >= 0.0 && me.reaped_secs >= 0.0);
        let mut found = false;
        for_each_child(me.ppid, |pid, _| found |= pid == std::process::id().to_string()).unwrap();
        assert!(found, "this process is among its parent's children");
        assert!(proc_cpu("not-a-pid").is_none());
    }
}
