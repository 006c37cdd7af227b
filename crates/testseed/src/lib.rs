//! Replayable randomness for tests.
//!
//! Every test that draws random numbers (proptest, the kill -9 stress tests, the CDC crash
//! test) takes its seed from here:
//!
//! - `FINTRAIL_TEST_SEED=N` set: the seed is `N` (replay);
//! - unset: a fresh seed from the clock and the process's random hasher keys.
//!
//! The seed and the one command that replays the test are printed when the seed is drawn.
//! libtest captures a test's output and shows it only when the test fails, so a green run
//! stays quiet and a red one shows, next to the panic, a line such as
//!
//! ```text
//! test seed 1234 — replay: FINTRAIL_TEST_SEED=1234 cargo test -p fintrail --test ledger_stress -- sigkilled_server_never_loses_or_duplicates_money --exact
//! ```
//!
//! The guard repeats that line when it is dropped during a panic, so the command sits right
//! under the failure message even in a long captured log.
//!
//! Why not proptest's own `PROPTEST_RNG_SEED`: it covers proptest only, and it never prints
//! the seed it drew. One variable for every kind of randomized test is what a person replaying
//! a CI failure needs.

use std::hash::{BuildHasher, Hasher};

/// The one environment variable every randomized test reads its seed from.
pub const ENV: &str = "FINTRAIL_TEST_SEED";

/// Draws (or takes back) the seed of the calling test. Use it once, at the top of the test:
///
/// `let seed = fintrail_testseed::seed!();` then `seed.value()`.
#[macro_export]
macro_rules! seed {
    () => {
        $crate::Seed::resolve(env!("CARGO_PKG_NAME"), env!("CARGO_CRATE_NAME"), module_path!())
    };
}

/// A proptest configuration whose RNG seed comes from [`ENV`] (or is drawn and printed).
/// Use as the first line of a `proptest!` block:
/// `#![proptest_config(fintrail_testseed::proptest_config!())]`.
#[macro_export]
macro_rules! proptest_config {
    () => {
        $crate::seed!().proptest_config()
    };
}

/// The seed of one test run and the command that replays it.
#[derive(Debug)]
pub struct Seed {
    value: u64,
    replay: String,
    /// Whether the seed came from [`ENV`] (a replay) rather than being drawn.
    replayed: bool,
}

impl Seed {
    /// Resolve the seed for the test running on this thread. `package` is the Cargo package,
    /// `crate_name` the compiled target's crate name (an integration test's file stem, or the
    /// library's name for unit tests), `module` the caller's module path.
    ///
    /// # Panics
    /// When [`ENV`] is set but is not a decimal `u64`: a typo must not silently become a
    /// different, random run.
    pub fn resolve(package: &str, crate_name: &str, module: &str) -> Seed {
        let (value, replayed) = match std::env::var(ENV) {
            Ok(text) => match parse(&text) {
                Some(v) => (v, true),
                None => panic!("{ENV}={text:?} is not a decimal u64 seed"),
            },
            Err(_) => (fresh(), false),
        };
        let test = test_name(module);
        let replay = replay_command(package, crate_name, &test, value);
        let seed = Seed { value, replay, replayed };
        // Captured by libtest; shown only if the test fails.
        eprintln!("{}", seed.line());
        seed
    }

    /// A seed with a known value (tests of this crate; tools that replay a recorded seed).
    pub fn fixed(value: u64, replay: String) -> Seed {
        Seed { value, replay, replayed: true }
    }

    pub fn value(&self) -> u64 {
        self.value
    }

    /// True when the seed was taken from [`ENV`].
    pub fn replayed(&self) -> bool {
        self.replayed
    }

    /// The shell command that runs this test again with this seed.
    pub fn replay_command(&self) -> &str {
        &self.replay
    }

    /// The line printed for a person: seed and replay command.
    pub fn line(&self) -> String {
        format!("test seed {} — replay: {}", self.value, self.replay)
    }

    /// A proptest configuration (default case count, or `PROPTEST_CASES`) with this seed.
    pub fn proptest_config(&self) -> proptest::test_runner::Config {
        proptest::test_runner::Config {
            rng_seed: proptest::test_runner::RngSeed::Fixed(self.value),
            ..proptest::test_runner::Config::default()
        }
    }

    /// A derived, independent stream for a numbered part of the test (a client, a round):
    /// the same seed and index always give the same value.
    pub fn derive(&self, index: u64) -> u64 {
        splitmix64(self.value ^ splitmix64(index.wrapping_add(1)))
    }
}

impl Drop for Seed {
    fn drop(&mut self) {
        // Repeated under the panic message so the replay command is easy to find.
        if std::thread::panicking() {
            eprintln!("{}", self.line());
        }
    }
}

/// Parse a seed: decimal digits only (surrounding whitespace allowed).
pub fn parse(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// Pull the seed back out of a line printed by [`Seed::line`] (or any text that contains
/// `FINTRAIL_TEST_SEED=N`).
pub fn find_in(text: &str) -> Option<u64> {
    let marker = format!("{ENV}=");
    let at = text.find(&marker)? + marker.len();
    let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    parse(&digits)
}

/// The SplitMix64 finaliser: a bijective mix, so distinct inputs give distinct outputs.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A fresh seed: std's per-process random hasher keys mixed with the clock. No `rand`
/// dependency needed for one number.
fn fresh() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.finish()
}

/// libtest names each test's thread after the test's path inside its crate
/// (`tests::my_test`). Outside libtest (a thread named otherwise), fall back to the module.
fn test_name(module: &str) -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => module.split_once("::").map(|(_, rest)| rest.to_string()).unwrap_or_default(),
    }
}

fn replay_command(package: &str, crate_name: &str, test: &str, value: u64) -> String {
    // A library's unit tests compile under the package's name with `-` turned into `_`; an
    // integration test under its file stem.
    let target = if crate_name == package.replace('-', "_") {
        if package == "fintrail" {
            "--bin fintrail".to_string()
        } else {
            "--lib".to_string()
        }
    } else {
        format!("--test {crate_name}")
    };
    format!("{ENV}={value} cargo test -p {package} {target} -- {test} --exact")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_line_gives_the_seed_back() {
        let s = Seed::fixed(42, replay_command("fintrail-cdc", "crash", "killed", 42));
        assert_eq!(find_in(&s.line()), Some(42));
        assert_eq!(
            s.replay_command(),
            "FINTRAIL_TEST_SEED=42 cargo test -p fintrail-cdc --test crash -- killed --exact"
        );
        let lib = replay_command("fintrail-api", "fintrail_api", "media::tests::x", 7);
        assert!(lib.contains("-p fintrail-api --lib -- media::tests::x --exact"), "{lib}");
        let bin = replay_command("fintrail", "fintrail", "telemetry::tests::x", 7);
        assert!(bin.contains("--bin fintrail"), "{bin}");
    }

    #[test]
    fn seeds_parse_strictly() {
        assert_eq!(parse(" 18446744073709551615\n"), Some(u64::MAX));
        for bad in ["", "-1", "0x10", "12a", "18446744073709551616"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(find_in("no seed here"), None);
    }

    #[test]
    fn the_test_name_is_the_libtest_thread_name() {
        let s = seed!();
        assert!(s.replay_command().ends_with("-- tests::the_test_name_is_the_libtest_thread_name --exact"), "{s:?}");
    }

    #[test]
    fn derived_streams_are_stable_and_distinct() {
        let s = Seed::fixed(9, String::new());
        assert_eq!(s.derive(3), Seed::fixed(9, String::new()).derive(3));
        let mut seen: Vec<u64> = (0..1000).map(|i| s.derive(i)).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 1000);
    }
}
