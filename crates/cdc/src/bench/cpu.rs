//! CPU accounting for the CDC benches, from /proc: this process (the pipeline), its reaped
//! children (pg_recvlogical), the private cluster's processes (the walsender separately) and
//! the whole machine, between two snapshots.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use fintrail_db::proc_cpu::{self, proc_cpu, TICKS_PER_SEC};

/// CPU counters at one moment.
#[derive(Debug, Clone)]
pub struct Snap {
    at: Instant,
    /// This process: user + system seconds.
    me: f64,
    /// This process's reaped children: user + system seconds.
    children: f64,
    /// The machine: (busy seconds summed over CPUs, all seconds summed over CPUs).
    machine: (f64, f64),
    server: Option<Server>,
}

/// The cluster's processes: the postmaster's own and reaped children's seconds, and each
/// live child's (seconds, is a walsender).
#[derive(Debug, Clone)]
struct Server {
    postmaster: f64,
    children: HashMap<u32, (f64, bool)>,
}

/// CPU used between two snapshots, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Use {
    pub wall_secs: f64,
    /// This process (ours: the pipeline, and the bench's own small reader task).
    pub me: f64,
    /// Children of this process reaped in the window (pg_recvlogical).
    pub children: f64,
    /// The machine's busy CPU seconds (all CPUs), and its capacity (CPUs × wall).
    pub machine_busy: f64,
    pub machine_capacity: f64,
    /// PostgreSQL: every process of the cluster (backends, walsenders, background work).
    pub server: f64,
    /// Of which the walsenders (decoding for the consumers).
    pub walsender: f64,
}

impl std::ops::AddAssign for Use {
    fn add_assign(&mut self, o: Use) {
        self.wall_secs += o.wall_secs;
        self.me += o.me;
        self.children += o.children;
        self.machine_busy += o.machine_busy;
        self.machine_capacity += o.machine_capacity;
        self.server += o.server;
        self.walsender += o.walsender;
    }
}

/// A process's user + system CPU seconds so far.
pub fn process_secs(pid: u32) -> Option<f64> {
    proc_cpu(&pid.to_string()).map(|c| c.own_secs)
}

/// (busy, total) CPU seconds of the machine since boot, summed over CPUs.
fn machine() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else { return (0.0, 0.0) };
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let v: Vec<f64> = line.split_whitespace().skip(1).take(8).filter_map(|x| x.parse().ok()).collect();
    let total: f64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0.0) + v.get(4).copied().unwrap_or(0.0);
    ((total - idle) / TICKS_PER_SEC, total / TICKS_PER_SEC)
}

fn server(postmaster: u32) -> Option<Server> {
    let pm = proc_cpu(&postmaster.to_string())?;
    let mut children = HashMap::new();
    proc_cpu::for_each_child(postmaster, |pid, cpu| {
        // The process title: "postgres: walsender <user> ..." for a walsender.
        let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let walsender = title.windows(10).any(|w| w == b"walsender ");
        if let Ok(pid) = pid.parse() {
            children.insert(pid, (cpu.own_secs, walsender));
        }
    })?;
    Some(Server { postmaster: pm.own_secs + pm.reaped_secs, children })
}

impl Snap {
    pub fn now(postmaster: Option<u32>) -> Snap {
        let (me, children) = proc_cpu("self").map_or((0.0, 0.0), |c| (c.own_secs, c.reaped_secs));
        Snap { at: Instant::now(), me, children, machine: machine(), server: postmaster.and_then(server) }
    }

    /// What was used since `self`. A server process that ended in between counts in the
    /// postmaster's reaped children (a walsender's then too, without its label).
    pub fn until(&self, end: &Snap) -> Use {
        let (server, walsender) = match (&self.server, &end.server) {
            (Some(a), Some(b)) => {
                let mut server = b.postmaster - a.postmaster;
                let mut walsender = 0.0;
                for (pid, (secs, wal)) in &b.children {
                    let before = a.children.get(pid).map_or(0.0, |c| c.0);
                    let d = (secs - before).max(0.0);
                    server += d;
                    if *wal {
                        walsender += d;
                    }
                }
                // Children alive at the start and reaped since: their time moved into the
                // postmaster's reaped total, which already counts it in full; take off what
                // they had used before the start.
                for (pid, (secs, _)) in &a.children {
                    if !b.children.contains_key(pid) {
                        server -= secs;
                    }
                }
                (server.max(0.0), walsender)
            }
            _ => (0.0, 0.0),
        };
        Use {
            wall_secs: end.at.duration_since(self.at).as_secs_f64(),
            me: end.me - self.me,
            children: end.children - self.children,
            machine_busy: end.machine.0 - self.machine.0,
            machine_capacity: end.machine.1 - self.machine.1,
            server,
            walsender,
        }
    }
}

/// The walsenders' CPU while a consumer runs, sampled every [`WATCH_INTERVAL`]: a walsender
/// exits with its consumer, and its time then lands in the postmaster's reaped total without
/// its label. What it used after the last sample is missed.
pub struct WalsenderWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<f64>,
}

pub const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

impl WalsenderWatch {
    pub fn start(postmaster: Option<u32>) -> Option<WalsenderWatch> {
        let pm = postmaster?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::task::spawn_blocking(move || {
            // Per walsender: (seconds when first seen, or 0 if it started after the first
            // scan; seconds at the last scan).
            let mut seen: HashMap<u32, (f64, f64)> = HashMap::new();
            let mut first = true;
            loop {
                if let Some(s) = server(pm) {
                    for (pid, (secs, wal)) in s.children {
                        if wal {
                            seen.entry(pid).or_insert((if first { secs } else { 0.0 }, secs)).1 = secs;
                        }
                    }
                }
                first = false;
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(WATCH_INTERVAL);
            }
            seen.values().map(|(a, b)| (b - a).max(0.0)).sum()
        });
        Some(WalsenderWatch { stop, task })
    }

    /// The walsenders' CPU seconds since the start.
    pub async fn stop(self) -> f64 {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap_or(0.0)
    }
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_the_machine() {
        let a = Snap::now(None);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let u = a.until(&Snap::now(Some(std::process::id())));
        assert!(u.me >= 0.0 && u.machine_capacity > 0.0 && u.machine_busy <= u.machine_capacity + 0.05);
        assert!(loadavg() >= 0.0);
    }
}
