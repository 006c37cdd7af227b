//! Production configuration is environment only (issue #14): `docs/configuration.md`'s table is
//! kept honest against the code and `infra/`, and the real binary fails fast, naming the
//! variable, on a missing or malformed one — and starts from the environment alone when it is
//! complete.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

#[derive(Debug)]
struct Row {
    used_by: String,
    secret: bool,
    set_by: String,
}

fn table() -> BTreeMap<String, Row> {
    let text =
        std::fs::read_to_string(support::repo_root().join("docs/configuration.md")).expect("docs/configuration.md");
    let mut rows = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 7, "a row has 7 cells: {line}");
        let name = cells[0].trim_matches('`').to_owned();
        assert!(
            name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
            "one variable per row: {line}"
        );
        assert!(["yes", "no"].contains(&cells[5]), "secret is yes or no: {line}");
        let row = Row { used_by: cells[1].to_owned(), secret: cells[5] == "yes", set_by: cells[6].to_owned() };
        assert!(rows.insert(name.clone(), row).is_none(), "{name} has two rows");
    }
    assert!(rows.len() > 30, "the table was found");
    rows
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").map(|e| e.expect("entry")) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                files(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

/// `FINTRAIL_*` tokens in `text`; with `quoted`, only string literals (`"FINTRAIL_X"`).
fn names(text: &str, quoted: bool) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("FINTRAIL_") {
        let start = i + at;
        let mut end = start + "FINTRAIL_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_uppercase() || bytes[end].is_ascii_digit() || bytes[end] == b'_')
        {
            end += 1;
        }
        let before = if start > 0 { bytes[start - 1] } else { b' ' };
        let after = bytes.get(end).copied().unwrap_or(b' ');
        let ok =
            if quoted { before == b'"' && after == b'"' } else { !(before.is_ascii_alphanumeric() || before == b'_') };
        if ok && end > start + "FINTRAIL_".len() {
            found.insert(text[start..end].to_owned());
        }
        i = end;
    }
    found
}

/// Every `FINTRAIL_*` name the code reads: string literals in the Rust sources (this file
/// excepted: it names made-up ones) and names in the shell scripts.
fn names_in_code() -> BTreeSet<String> {
    let root = support::repo_root();
    let mut all = Vec::new();
    files(&root.join("crates"), &mut all);
    let me = root.join("crates/cli/tests/configuration.rs");
    let mut found = BTreeSet::new();
    for f in all.iter().filter(|f| f.extension().is_some_and(|e| e == "rs") && **f != me) {
        found.extend(names(&std::fs::read_to_string(f).expect("read"), true));
    }
    let mut scripts: Vec<PathBuf> =
        all.into_iter().filter(|f| f.extension().is_some_and(|e| e == "sh" || e == "py")).collect();
    scripts.extend(["dev", ".ci/run", "infra/check.sh", "hooks/commit-msg", "hooks/pre-commit"].map(|p| root.join(p)));
    for f in scripts {
        found.extend(names(&std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display())), false));
    }
    found
}

#[test]
fn every_variable_in_the_code_is_in_the_table_and_every_row_is_read() {
    let rows = table();
    let code = names_in_code();
    let missing: Vec<_> = code.iter().filter(|n| !rows.contains_key(*n)).collect();
    assert!(missing.is_empty(), "read by the code but not in docs/configuration.md: {missing:?}");
    for (name, row) in &rows {
        if !name.starts_with("FINTRAIL_") {
            continue;
        }
        assert!(!row.used_by.contains("*pending*"), "{name}: no variable is pending any more");
        assert!(code.contains(name), "{name} is in the table but nothing reads it");
    }
    // The few variables without the prefix: read by name, or by the library that owns them.
    let rust = |path: &str| std::fs::read_to_string(support::repo_root().join(path)).expect("read");
    for (name, path) in [("K_SERVICE", "crates/cli/src/deployed.rs"), ("PORT", "crates/cli/src/deployed.rs")] {
        assert!(rust(path).contains(&format!("\"{name}\"")), "{name} is read in {path}");
    }
    assert!(rust("crates/cli/src/main.rs").contains("env = \"DATABASE_URL\""));
    assert!(rust("crates/cli/src/telemetry.rs").contains("try_from_default_env"), "RUST_LOG (tracing-subscriber)");
    for name in ["K_SERVICE", "PORT", "DATABASE_URL", "RUST_LOG"] {
        assert!(rows.contains_key(name), "{name} has a row");
    }
}

/// Keys of `env = { ... }` and `secret_env = { ... }` in `module "NAME"` of infra/stack/main.tf,
/// each with its value's text.
fn infra_module_env(module: &str) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let text = std::fs::read_to_string(support::repo_root().join("infra/stack/main.tf")).expect("infra/stack/main.tf");
    let start = text.find(&format!("module \"{module}\" {{")).unwrap_or_else(|| panic!("module {module}"));
    let lines: Vec<&str> = text[start..].lines().collect();
    let (mut env, mut secret) = (BTreeMap::new(), BTreeMap::new());
    let mut current: Option<&mut BTreeMap<String, String>> = None;
    for line in lines.iter().skip(1) {
        if *line == "}" {
            break; // the module block ends (terraform fmt puts it in column 0)
        }
        let t = line.trim();
        if t == "env = {" {
            current = Some(&mut env);
        } else if t == "secret_env = {" {
            current = Some(&mut secret);
        } else if t == "}" {
            current = None;
        } else if let Some(map) = current.as_mut() {
            if let Some((k, v)) = t.split_once('=') {
                if !k.trim().starts_with('#') {
                    map.insert(k.trim().to_owned(), v.trim().to_owned());
                }
            }
        }
    }
    assert!(!env.is_empty(), "module {module} passes environment variables");
    (env, secret)
}

#[test]
fn infra_passes_every_variable_the_services_need_under_the_documented_names() {
    let rows = table();
    for (module, command) in [("api", "`serve`"), ("cdc", "`cdc run`")] {
        let (env, secret) = infra_module_env(module);
        // Everything passed is documented, for this command, as coming from infra that way.
        for (name, value) in env.iter().map(|(k, v)| (k, (v, false))).chain(secret.iter().map(|(k, v)| (k, (v, true))))
        {
            let (value, is_secret) = value;
            let row = rows.get(name).unwrap_or_else(|| panic!("module.{module} passes {name}, which has no row"));
            assert!(row.used_by.contains(command), "module.{module} passes {name}, but its row is not for {command}");
            assert_eq!(row.secret, is_secret, "{name}: secret in the table iff passed as secret_env (module.{module})");
            if is_secret {
                let id = value
                    .split("secret_ids[\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or_else(|| panic!("{name}: {value}"));
                assert!(
                    row.set_by.starts_with("infra: secret") && row.set_by.contains(id),
                    "{name}: module.{module} reads secret {id}; the row says {:?}",
                    row.set_by
                );
            } else {
                assert_eq!(row.set_by, "infra: env", "{name}: passed as a plain variable to module.{module}");
            }
        }
        // Everything documented as coming from infra for this command is passed.
        for (name, row) in rows.iter().filter(|(_, r)| r.used_by.contains(command) && r.set_by.starts_with("infra")) {
            let passed = if row.secret { secret.contains_key(name) } else { env.contains_key(name) };
            assert!(passed, "{name}: the table says infra sets it for {command}, module.{module} does not");
        }
    }
    let service = std::fs::read_to_string(support::repo_root().join("infra/modules/service/main.tf")).expect("service");
    assert!(service.contains("name  = \"FINTRAIL_ENVIRONMENT\""), "the service module sets FINTRAIL_ENVIRONMENT");
    assert_eq!(rows["FINTRAIL_ENVIRONMENT"].set_by, "service module");
}

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fintrail"));
    for (k, _) in std::env::vars() {
        if k.starts_with("FINTRAIL_") || k == "DATABASE_URL" || k == "K_SERVICE" || k == "PORT" {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn temp_home(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").subsec_nanos();
    std::env::temp_dir().join(format!("fintrail-config-{tag}-{}-{nanos}", std::process::id()))
}

/// Runs `fintrail ARGS` with `vars`; returns (exit code, stderr).
fn run(args: &[&str], vars: &[(&str, &str)], home: &Path) -> (Option<i32>, String) {
    let out = bin()
        .args(args)
        .env("FINTRAIL_HOME", home)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run fintrail");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn serve_with_a_missing_or_malformed_variable_exits_2_naming_it_and_starts_nothing() {
    let home = temp_home("bad");
    let key = support::TEST_KEY_HEX;
    let complete: Vec<(&str, &str)> = vec![
        ("FINTRAIL_ENVIRONMENT", "prod"),
        ("FINTRAIL_DATABASE_HOST", "127.0.0.1"),
        ("FINTRAIL_DATABASE_USER", "fintrail_app"),
        ("FINTRAIL_DATABASE_PASSWORD", "app-password-value"),
        ("FINTRAIL_SEQUENCER_PASSWORD", "sequencer-password-value"),
        ("FINTRAIL_JOBS_OIDC_AUDIENCE", "https://fintrail-prod-api-1.europe-west1.run.app"),
        ("FINTRAIL_JOBS_INVOKER", "fintrail-prod-scheduler@fintrail-prod.iam.gserviceaccount.com"),
        ("FINTRAIL_AUDIT_CHECKPOINT_KEY", key),
        ("FINTRAIL_MEDIA_URL_KEY", support::TEST_MEDIA_URL_KEY_HEX),
    ];
    let without = |name: &str| complete.iter().copied().filter(|(k, _)| *k != name).collect::<Vec<_>>();
    let with = |name: &'static str, value: &'static str| {
        let mut v = without(name);
        v.push((name, value));
        v
    };

    // A required variable missing: named, with what it is.
    let (code, err) = run(&["serve"], &without("FINTRAIL_DATABASE_HOST"), &home);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("1 configuration problem in the environment"), "{err}");
    assert!(err.contains("FINTRAIL_DATABASE_HOST: is missing: the database server's address"), "{err}");

    // Malformed values: named, with what a good value looks like; a secret never printed.
    for (name, value, expected) in [
        ("FINTRAIL_DATABASE_PORT", "54x32", "FINTRAIL_DATABASE_PORT: \"54x32\" is not a port number (1-65535)"),
        ("PORT", "http", "PORT: \"http\" is not a port number"),
        ("FINTRAIL_DATABASE_USER", "fintrail_replicator", "it runs as fintrail_app"),
        ("FINTRAIL_ENVIRONMENT", "production", "FINTRAIL_ENVIRONMENT: \"production\" is not an environment"),
        (
            "FINTRAIL_JOBS_OIDC_AUDIENCE",
            "http://api",
            "FINTRAIL_JOBS_OIDC_AUDIENCE: \"http://api\" is not an https:// URL",
        ),
        (
            "FINTRAIL_AUDIT_CHECKPOINT_KEY",
            "secret-but-not-hex",
            "FINTRAIL_AUDIT_CHECKPOINT_KEY: (value withheld) must be 64 hex",
        ),
        ("FINTRAIL_LOG_FORMAT", "xml", "FINTRAIL_LOG_FORMAT: \"xml\" is not a log format"),
        // TLS: a mode that would accept any certificate, and a CA that is not one.
        ("FINTRAIL_DB_SSLMODE", "require", "FINTRAIL_DB_SSLMODE: sslmode \"require\" is not supported"),
        ("FINTRAIL_DB_SSLROOTCERT_PEM", "not a certificate", "FINTRAIL_DB_SSLROOTCERT_PEM: holds no PEM certificate"),
        (
            "FINTRAIL_DB_SSLMODE",
            "verify-ca",
            "FINTRAIL_DB_SSLROOTCERT: sslmode verify-ca needs FINTRAIL_DB_SSLROOTCERT",
        ),
        // Media: a signer without its bucket is a half-done configuration.
        ("FINTRAIL_MEDIA_SIGNER", "signer@p.iam.gserviceaccount.com", "FINTRAIL_MEDIA_BUCKET: "),
    ] {
        let (code, err) = run(&["serve"], &with(name, value), &home);
        assert_eq!(code, Some(2), "{name}={value}: {err}");
        assert!(err.contains(expected), "{name}={value}: {err}");
        assert!(!err.contains("secret-but-not-hex") && !err.contains("password-value"), "{err}");
    }

    // Several at once: all named in one message.
    let mut several = without("FINTRAIL_SEQUENCER_PASSWORD");
    several.retain(|(k, _)| *k != "FINTRAIL_JOBS_INVOKER");
    let (code, err) = run(&["serve"], &several, &home);
    assert_eq!(code, Some(2));
    assert!(err.contains("2 configuration problems"), "{err}");
    assert!(
        err.contains("FINTRAIL_SEQUENCER_PASSWORD: is missing") && err.contains("FINTRAIL_JOBS_INVOKER: is missing")
    );

    // A secret from a file that cannot be read.
    let mut from_file = without("FINTRAIL_DATABASE_PASSWORD");
    from_file.push(("FINTRAIL_DATABASE_PASSWORD_FILE", "/nonexistent/fintrail/db-password"));
    let (code, err) = run(&["serve"], &from_file, &home);
    assert_eq!(code, Some(2));
    assert!(err.contains("FINTRAIL_DATABASE_PASSWORD_FILE: names /nonexistent/fintrail/db-password"), "{err}");

    // On Cloud Run without FINTRAIL_ENVIRONMENT: refused, not the local defaults.
    let (code, err) = run(&["serve"], &[("K_SERVICE", "fintrail-prod-api")], &home);
    assert_eq!(code, Some(2));
    assert!(err.contains("FINTRAIL_ENVIRONMENT: is missing, and K_SERVICE says this is Cloud Run"), "{err}");

    // cdc run: its own role and the pseudonymization key.
    let (code, err) = run(
        &["cdc", "run"],
        &[
            ("FINTRAIL_ENVIRONMENT", "dev"),
            ("FINTRAIL_DATABASE_HOST", "127.0.0.1"),
            ("FINTRAIL_DATABASE_USER", "fintrail_replicator"),
            ("FINTRAIL_DATABASE_PASSWORD", "x"),
        ],
        &home,
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("FINTRAIL_PSEUDONYMIZE_KEY: is missing"), "{err}");

    // cdc run into BigQuery without its dataset: named in the same message.
    let (code, err) = run(
        &["cdc", "run"],
        &[
            ("FINTRAIL_ENVIRONMENT", "dev"),
            ("FINTRAIL_DATABASE_HOST", "127.0.0.1"),
            ("FINTRAIL_DATABASE_USER", "fintrail_replicator"),
            ("FINTRAIL_DATABASE_PASSWORD", "x"),
            ("FINTRAIL_PSEUDONYMIZE_KEY", support::TEST_KEY_HEX),
            ("FINTRAIL_CDC_SINK", "bigquery"),
            ("FINTRAIL_BIGQUERY_PROJECT", "fintrail-dev"),
        ],
        &home,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("FINTRAIL_BIGQUERY_DATASET is required"), "{err}");

    // Nothing was started or written: no home, no cluster.
    assert!(!home.exists(), "a misconfigured process writes nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_starts_from_the_environment_alone() {
    let db = fintrail_db::testing::fresh_db().await;
    let home = temp_home("ok");
    // Production mode: no DATABASE_URL, no private cluster, nothing but the environment. The
    // database password comes from a file, as a Secret Manager volume would mount it.
    let secrets = home.with_extension("secrets");
    std::fs::create_dir_all(&secrets).expect("secrets dir");
    let mut vars = support::serve_env(&db);
    let pw = vars.iter().position(|(k, _)| k == "FINTRAIL_DATABASE_PASSWORD").expect("password");
    let (_, password) = vars.remove(pw);
    std::fs::write(secrets.join("db-password"), format!("{password}\n")).expect("write secret file");
    vars.push(("FINTRAIL_DATABASE_PASSWORD_FILE".into(), secrets.join("db-password").display().to_string()));
    let mut child = bin()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("FINTRAIL_HOME", &home)
        .envs(vars)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let addr = support::wait_listening(&mut child, Duration::from_secs(60));
    let health = support::http_get(&addr, "/healthz", None);
    // An unknown token is looked up in the database: 401 proves the app role's pool works.
    let unknown = support::http_get(&addr, "/v1/customers/1", Some("ft_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    let status = support::stop(&mut child, Duration::from_secs(20));
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(unknown.starts_with("HTTP/1.1 401"), "{unknown}");
    assert!(status.success(), "SIGTERM stops it cleanly: {status}");
    // The checkpoint key from the environment is where every reader of it looks.
    let key = fintrail_db::keys::load(&home.join("keys"), fintrail_db::keys::AUDIT_CHECKPOINT_KEY)
        .expect("read")
        .expect("installed");
    assert_eq!(hex_of(key.secret()), support::TEST_KEY_HEX);
    // So is the media URL key: every instance signs and checks download URLs with the same one.
    let key = fintrail_db::keys::load(&home.join("keys"), fintrail_db::keys::MEDIA_URL_KEY)
        .expect("read")
        .expect("installed");
    assert_eq!(hex_of(key.secret()), support::TEST_MEDIA_URL_KEY_HEX);
    assert!(!home.join("pg").exists(), "no private cluster in production mode");
    let _ = std::fs::remove_dir_all(&home);
    let _ = std::fs::remove_dir_all(&secrets);
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn cdc_run_starts_from_the_environment_alone_with_the_replicators_credentials() {
    let db = fintrail_db::testing::fresh_db().await;
    // What the migration job does with the admin's URL before the services start.
    let policy = fintrail_cdc::policy::Policy::load(None).expect("the checked-in policy");
    fintrail_cdc::source::setup(&db, &policy, &fintrail_cdc::source::Names::default()).await.expect("cdc setup");
    let rep = db.params(fintrail_db::DbRole::Replicator);
    let home = temp_home("cdc");
    let mut child = bin()
        .args(["cdc", "run"])
        .env("FINTRAIL_HOME", &home)
        .env("FINTRAIL_LOG_FORMAT", "json")
        .env("FINTRAIL_ENVIRONMENT", "dev")
        .env("FINTRAIL_DATABASE_HOST", &rep.host)
        .env("FINTRAIL_DATABASE_PORT", rep.port.to_string())
        .env("FINTRAIL_DATABASE_NAME", &rep.dbname)
        .env("FINTRAIL_DATABASE_USER", &rep.user)
        .env("FINTRAIL_DATABASE_PASSWORD", rep.password.clone().expect("replicator password"))
        .env("FINTRAIL_PSEUDONYMIZE_KEY", support::TEST_KEY_HEX)
        .envs(support::tls_env(&db))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cdc run");
    // The replicator alone cannot set the publication up: the pipeline must not try (it did,
    // as the admin, and failed on a service holding one role's credentials).
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline && !seen.iter().any(|l: &String| l.contains("snapshot done")) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("cdc run exited ({status}):\n{}", seen.join("\n"));
        }
    }
    // Known limit (crates/cdc): the pipeline installs its SIGTERM handler when it first polls
    // its shutdown future, after the snapshot; a SIGTERM before that ends the process at once.
    std::thread::sleep(Duration::from_secs(3));
    let status = support::stop(&mut child, Duration::from_secs(30));
    assert!(seen.iter().any(|l| l.contains("snapshot done")), "{}", seen.join("\n"));
    assert!(status.success(), "SIGTERM stops it cleanly: {status}\n{}", seen.join("\n"));
    let key = std::fs::read_to_string(home.join("keys").join(fintrail_cdc::policy::KEY_FILE)).expect("key installed");
    assert_eq!(key, support::TEST_KEY_HEX);
    let _ = std::fs::remove_dir_all(&home);
}
