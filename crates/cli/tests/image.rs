//! The container image (issue #14): the `Dockerfile` read as text — two stages, every base
//! pinned by digest, a non-root user, `fintrail` the entrypoint, no PostgreSQL, DuckDB pinned
//! exactly as `./dev` pins it, an allow-list `.dockerignore` — and then built for real with
//! buildah (`./dev setup` installs it from Debian; `--isolation chroot`, no daemon):
//!
//! - The registries of the base images cannot be reached from here, so the test builds the
//!   `runtime` stage on a stand-in base: Debian bookworm made by `debootstrap` from Debian's
//!   mirror (distroless `cc-debian12` is bookworm's glibc and libstdc++ too), cached under the
//!   cargo target folder. The `build` stage is replaced (`--build-context build=DIR`) by a
//!   folder holding what it produces: this test build of `fintrail` and `.deps/duckdb`'s
//!   `libduckdb.so` (whose hash must be ./dev's). The compile in the official Rust image is not
//!   run here (a release build takes ten minutes on two cores; Cloud Build runs it on merge).
//! - Then: the image's configuration (user, entrypoint, command, environment), its file list
//!   (exactly the two files the runtime stage adds to its base, no PostgreSQL binary anywhere),
//!   `fintrail --version` in it, and `fintrail serve` in it in production mode (environment
//!   only) against this test binary's private cluster: `/healthz` answers and a request that
//!   needs the database gets its answer.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

// ------------------------------------------------------------------------ the Dockerfile

/// One instruction: keyword (upper case) and its arguments, continuation lines joined.
#[derive(Debug, Clone)]
struct Instr {
    keyword: String,
    args: String,
}

fn dockerfile_text() -> String {
    std::fs::read_to_string(support::repo_root().join("Dockerfile")).expect("Dockerfile")
}

fn parse(text: &str) -> Vec<Instr> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let t = line.trim();
        if current.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(stripped) = t.strip_suffix('\\') {
            current.push_str(stripped);
            current.push(' ');
            continue;
        }
        current.push_str(t);
        let (kw, args) = current.split_once(char::is_whitespace).unwrap_or((current.as_str(), ""));
        out.push(Instr { keyword: kw.to_ascii_uppercase(), args: args.trim().to_owned() });
        current.clear();
    }
    assert!(current.is_empty(), "a continuation line ends the file");
    out
}

/// The stages: (name, base image with global ARGs resolved, instructions).
fn stages(instrs: &[Instr]) -> Vec<(String, String, Vec<Instr>)> {
    let mut globals = BTreeMap::new();
    let mut stages: Vec<(String, String, Vec<Instr>)> = Vec::new();
    for i in instrs {
        match i.keyword.as_str() {
            "ARG" if stages.is_empty() => {
                let (k, v) = i.args.split_once('=').expect("global ARGs have defaults");
                globals.insert(k.to_owned(), v.to_owned());
            }
            "FROM" => {
                let parts: Vec<&str> = i.args.split_whitespace().collect();
                assert!(parts.len() == 3 && parts[1].eq_ignore_ascii_case("AS"), "FROM IMAGE AS NAME: {}", i.args);
                let mut image = parts[0].to_owned();
                for (k, v) in &globals {
                    image = image.replace(&format!("${{{k}}}"), v);
                }
                stages.push((parts[2].to_owned(), image, Vec::new()));
            }
            _ => stages.last_mut().expect("an instruction before the first FROM").2.push(i.clone()),
        }
    }
    stages
}

/// `name=value` of ARG lines in `instrs`.
fn args_of(instrs: &[Instr]) -> BTreeMap<String, String> {
    instrs
        .iter()
        .filter(|i| i.keyword == "ARG")
        .filter_map(|i| i.args.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// `VAR="value"` assignments of the `./dev` script.
fn dev_pin(name: &str) -> String {
    let dev = std::fs::read_to_string(support::repo_root().join("dev")).expect("dev");
    let line = dev.lines().find(|l| l.starts_with(&format!("{name}="))).unwrap_or_else(|| panic!("{name} in ./dev"));
    line.split('"').nth(1).expect("a quoted value").to_owned()
}

/// What the runtime stage copies out of the build stage: (source in `build`, destination).
const RUNTIME_COPIES: &[(&str, &str)] = &[
    ("/usr/local/lib/fintrail/libduckdb.so", "/usr/local/lib/fintrail/libduckdb.so"),
    ("/out/fintrail", "/usr/local/bin/fintrail"),
];

fn is_digest_pinned(image: &str) -> bool {
    image.rsplit_once("@sha256:").is_some_and(|(name, d)| {
        !name.is_empty() && d.len() == 64 && d.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

#[test]
fn the_dockerfile_is_two_pinned_stages_non_root_fintrail_and_no_postgres() {
    let text = dockerfile_text();
    let instrs = parse(&text);
    let stages = stages(&instrs);
    let names: Vec<&str> = stages.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(names, ["build", "runtime"], "multi-stage: build, then the runtime image last");
    for (name, image, _) in &stages {
        assert!(is_digest_pinned(image), "stage {name}: FROM {image} is not pinned by digest");
    }
    assert!(stages[0].1.contains("/rust:"), "the build stage is the official Rust image: {}", stages[0].1);
    assert!(stages[1].1.starts_with("gcr.io/distroless/cc-debian12"), "the runtime is distroless cc: {}", stages[1].1);

    // The build: the locked release build of the one binary.
    let build = &stages[0].2;
    let runs: Vec<&str> = build.iter().filter(|i| i.keyword == "RUN").map(|i| i.args.as_str()).collect();
    assert!(runs.iter().any(|r| r.contains("cargo build --release --locked -p fintrail")), "{runs:?}");

    // DuckDB: ./dev's package and hashes, and the run-path folder the runtime copies it to.
    let a = args_of(build);
    assert_eq!(a["DUCKDB_NPM_PKG"], dev_pin("DUCKDB_NPM_PKG"));
    assert_eq!(a["DUCKDB_TGZ_SHA256"], dev_pin("DUCKDB_TGZ_SHA256"));
    assert_eq!(a["DUCKDB_SO_SHA256"], dev_pin("DUCKDB_SO_SHA256"));
    let (pkg, version) = a["DUCKDB_NPM_PKG"].rsplit_once('@').expect("name@version");
    let leaf = pkg.rsplit('/').next().expect("package leaf");
    assert_eq!(a["DUCKDB_TGZ_URL"], format!("https://registry.npmjs.org/{pkg}/-/{leaf}-{version}.tgz"));
    assert!(runs.iter().any(|r| r.contains("$DUCKDB_TGZ_SHA256")
        && r.contains("$DUCKDB_SO_SHA256")
        && r.contains("sha256sum --check")));
    let lib_dir =
        build.iter().find(|i| i.keyword == "ENV" && i.args.starts_with("DUCKDB_LIB_DIR=")).expect("DUCKDB_LIB_DIR");
    assert_eq!(lib_dir.args, "DUCKDB_LIB_DIR=/usr/local/lib/fintrail");

    // The runtime: nothing run in it (distroless has no shell), exactly these files copied in,
    // a numeric non-root user, fintrail as the entrypoint, serve by default.
    let runtime = &stages[1].2;
    assert!(runtime.iter().all(|i| i.keyword != "RUN"), "no RUN in the runtime stage");
    let copies: Vec<(String, String)> = runtime
        .iter()
        .filter(|i| i.keyword == "COPY" || i.keyword == "ADD")
        .map(|i| {
            let parts: Vec<&str> = i.args.split_whitespace().collect();
            assert_eq!(parts.len(), 3, "COPY --from=build SRC DST: {}", i.args);
            assert_eq!(parts[0], "--from=build", "the runtime copies only from the build stage: {}", i.args);
            (parts[1].to_owned(), parts[2].to_owned())
        })
        .collect();
    let expected: Vec<(String, String)> =
        RUNTIME_COPIES.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
    assert_eq!(copies, expected);
    let users: Vec<&str> = runtime.iter().filter(|i| i.keyword == "USER").map(|i| i.args.as_str()).collect();
    assert_eq!(users.len(), 1, "one USER in the runtime stage: {users:?}");
    let (uid, gid) = users[0].split_once(':').expect("USER uid:gid");
    for id in [uid, gid] {
        let n: u32 = id.parse().expect("numeric (the runtime has no /etc/passwd entry to look up)");
        assert_ne!(n, 0, "not root");
    }
    let entrypoint = runtime.iter().rfind(|i| i.keyword == "ENTRYPOINT").expect("ENTRYPOINT");
    assert_eq!(entrypoint.args, r#"["/usr/local/bin/fintrail"]"#, "exec form, fintrail itself");
    let cmd = runtime.iter().rfind(|i| i.keyword == "CMD").expect("CMD");
    assert_eq!(cmd.args, r#"["serve"]"#);

    // No PostgreSQL: nothing installs, copies or names a server binary.
    for i in &instrs {
        let lower = i.args.to_ascii_lowercase();
        for word in ["postgres", "initdb", "pg_ctl"] {
            assert!(!lower.contains(word), "{} {}: {word}", i.keyword, i.args);
        }
    }
}

#[test]
fn the_build_context_is_the_sources_only_and_holds_what_the_build_reads() {
    let root = support::repo_root();
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).expect(".dockerignore");
    let rules: Vec<&str> = ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    assert_eq!(rules.first(), Some(&"*"), "an allow-list: everything is out unless named");
    let allowed: BTreeSet<&str> = rules.iter().filter_map(|r| r.strip_prefix('!')).collect();
    let expected: BTreeSet<&str> =
        ["Cargo.toml", "Cargo.lock", "rustfmt.toml", "crates/", "analytics/replication.toml", "analytics/views/"]
            .into();
    assert_eq!(allowed, expected);
    for path in &allowed {
        assert!(root.join(path).exists(), "{path} exists");
    }
    // Every file the sources include from outside crates/ is let in.
    let mut rs = Vec::new();
    collect_rs(&root.join("crates"), &mut rs);
    for f in rs.iter().filter(|f| f.components().any(|c| c.as_os_str() == "src")) {
        let text = std::fs::read_to_string(f).expect("read");
        for piece in text.split("include_str!(\"").skip(1) {
            let rel = piece.split('"').next().expect("path");
            let target = f.parent().expect("dir").join(rel);
            let target = target.canonicalize().unwrap_or_else(|e| panic!("{}: {rel}: {e}", f.display()));
            let rel_to_root = target.strip_prefix(&root).expect("inside the repository").to_string_lossy().into_owned();
            assert!(
                allowed.iter().any(|a| rel_to_root.starts_with(a.trim_end_matches('/'))),
                "{} includes {rel_to_root}, which .dockerignore keeps out",
                f.display()
            );
        }
    }
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry")) {
        let p = e.path();
        if p.is_dir() && p.file_name().is_some_and(|n| n != "target") {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

// -------------------------------------------------------------------- the real build

/// The cargo target folder (this binary is target/debug/deps/image-…).
fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fintrail")).parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

/// buildah with its own storage under the target folder (the machine's is left alone).
struct Buildah {
    root: PathBuf,
    driver: &'static str,
}

impl Buildah {
    fn cmd(&self) -> Command {
        let mut c = Command::new("buildah");
        c.arg("--root")
            .arg(self.root.join("storage"))
            .arg("--runroot")
            .arg(self.root.join("run"))
            .arg("--storage-driver")
            .arg(self.driver);
        c
    }

    /// Runs `buildah ARGS` (bounded); returns stdout, panics with stderr on failure.
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("timeout")
            .arg("900")
            .arg("buildah")
            .args(self.cmd().get_args())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run buildah");
        assert!(
            out.status.success(),
            "buildah {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn image_exists(&self, name: &str) -> bool {
        self.cmd()
            .args(["inspect", "--type", "image", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

const BASE: &str = "localhost/fintrail-test/bookworm:base";
const IMAGE: &str = "localhost/fintrail-test/fintrail:test";

/// The stand-in runtime base: Debian bookworm (minbase) from Debian's mirror, made once.
fn ensure_base(b: &Buildah) {
    if b.image_exists(BASE) {
        return;
    }
    let dir = b.root.join("base");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("base dir");
    let rootfs = dir.join("rootfs");
    let out = Command::new("timeout")
        .args(["900", "debootstrap", "--variant=minbase", "--include=ca-certificates", "bookworm"])
        .arg(&rootfs)
        .arg("http://deb.debian.org/debian")
        .output()
        .expect("run debootstrap (./dev setup installs it)");
    assert!(out.status.success(), "debootstrap: {}", String::from_utf8_lossy(&out.stderr));
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(dir.join("rootfs.tar"))
        .arg(".")
        .status()
        .expect("tar");
    assert!(tar.success());
    std::fs::remove_dir_all(&rootfs).expect("remove the unpacked rootfs");
    std::fs::write(dir.join("Dockerfile"), "FROM scratch\nADD rootfs.tar /\n").expect("write");
    b.run(&["build", "--isolation", "chroot", "--quiet", "-t", BASE, dir.to_str().expect("utf8")]);
    std::fs::remove_file(dir.join("rootfs.tar")).expect("remove the tarball");
}

/// Every path in a mounted image (relative, "/"-rooted).
fn file_list(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).expect("read").map(|e| e.expect("entry")) {
            let p = e.path();
            out.insert(format!("/{}", p.strip_prefix(root).expect("inside").display()));
            if e.file_type().expect("type").is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_builds_and_runs_fintrail_serve_from_the_environment() {
    for tool in ["buildah", "debootstrap"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().expect("sh");
        assert!(
            found.status.success(),
            "{tool} is not installed: ./dev setup installs it (apt-get install buildah debootstrap)"
        );
    }
    let work = target_dir().join("image-test");
    std::fs::create_dir_all(&work).expect("work dir");
    // overlay where the kernel allows it (seconds), else vfs (copies, slower).
    let overlay = Buildah { root: work.clone(), driver: "overlay" };
    let b = if overlay.cmd().arg("info").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
    {
        overlay
    } else {
        Buildah { root: work.join("vfs"), driver: "vfs" }
    };
    ensure_base(&b);

    // What the build stage would hand over, from this test build.
    let ctx = work.join("build-stage");
    let _ = std::fs::remove_dir_all(&ctx);
    let so = support::repo_root().join(".deps/duckdb/libduckdb.so");
    let sha = Command::new("sha256sum").arg(&so).output().expect("sha256sum");
    let sha = String::from_utf8_lossy(&sha.stdout).split_whitespace().next().unwrap_or_default().to_owned();
    assert_eq!(sha, dev_pin("DUCKDB_SO_SHA256"), "{} is ./dev's pinned library", so.display());
    for (from, (src, _)) in
        [(so, RUNTIME_COPIES[0]), (PathBuf::from(env!("CARGO_BIN_EXE_fintrail")), RUNTIME_COPIES[1])]
    {
        let dst = ctx.join(src.trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&from, &dst).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }

    let root = support::repo_root();
    b.run(&[
        "build",
        "--isolation",
        "chroot",
        "--pull=never",
        "--quiet",
        "--target",
        "runtime",
        "--build-context",
        &format!("build={}", ctx.display()),
        "--build-arg",
        &format!("RUNTIME_IMAGE={BASE}"),
        "-f",
        root.join("Dockerfile").to_str().expect("utf8"),
        "-t",
        IMAGE,
        root.to_str().expect("utf8"),
    ]);

    // The image's configuration.
    let inspect: serde_json::Value =
        serde_json::from_str(&b.run(&["inspect", "--type", "image", IMAGE])).expect("buildah inspect json");
    let config = &inspect["OCIv1"]["config"];
    assert_eq!(config["User"], "65532:65532");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/usr/local/bin/fintrail"]));
    assert_eq!(config["Cmd"], serde_json::json!(["serve"]));
    let env: Vec<&str> = config["Env"].as_array().expect("Env").iter().filter_map(|v| v.as_str()).collect();
    assert!(env.contains(&"FINTRAIL_HOME=/tmp/fintrail"), "{env:?}");

    // The file list: exactly the runtime stage's two files (and their folders) on the base; no
    // PostgreSQL binary anywhere in the image.
    let base_ctr = b.run(&["from", "--pull=never", "--quiet", BASE]);
    let ctr = b.run(&["from", "--pull=never", "--quiet", IMAGE]);
    let base_files = file_list(Path::new(&b.run(&["mount", &base_ctr])));
    let files = file_list(Path::new(&b.run(&["mount", &ctr])));
    let added: BTreeSet<&String> = files.difference(&base_files).collect();
    let expected: BTreeSet<String> =
        ["/usr/local/bin/fintrail", "/usr/local/lib/fintrail", "/usr/local/lib/fintrail/libduckdb.so"]
            .map(String::from)
            .into();
    assert_eq!(added, expected.iter().collect(), "what the image adds to its base");
    let pg: Vec<&String> = files
        .iter()
        .filter(|f| ["postgres", "initdb", "pg_ctl"].contains(&f.rsplit('/').next().unwrap_or_default()))
        .collect();
    assert!(pg.is_empty(), "PostgreSQL binaries in the image: {pg:?}");
    b.run(&["umount", &base_ctr]);
    b.run(&["rm", &base_ctr]);

    // fintrail --version, as the image's user.
    let version = b.run(&["run", "--isolation", "chroot", &ctr, "--", "/usr/local/bin/fintrail", "--version"]);
    assert_eq!(version, format!("fintrail {}", env!("CARGO_PKG_VERSION")));

    // fintrail serve in the image, production mode: the environment alone, against this test
    // binary's private cluster (chroot isolation shares the host's loopback).
    let db = fintrail_db::testing::fresh_db().await;
    let mut run = b.cmd();
    run.args(["run", "--isolation", "chroot"]);
    for (k, v) in support::serve_env(&db) {
        run.arg("--env").arg(format!("{k}={v}"));
    }
    run.args([&ctr, "--", "/usr/local/bin/fintrail", "serve", "--listen", "127.0.0.1:0"]);
    let mut child = run.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("buildah run");
    let addr = support::wait_listening(&mut child, Duration::from_secs(120));
    let health = support::http_get(&addr, "/healthz", None);
    let unknown = support::http_get(&addr, "/v1/customers/1", Some("ft_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    support::stop(&mut child, Duration::from_secs(20));
    b.run(&["rm", &ctr]);
    b.run(&["rmi", IMAGE]);
    let _ = std::fs::remove_dir_all(&ctx);
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(unknown.starts_with("HTTP/1.1 401"), "the app role's pool reached the database: {unknown}");
}
