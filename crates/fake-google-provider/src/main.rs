//! `fake-google-provider`: a FAKE, offline stand-in for the `hashicorp/google` Terraform
//! provider, so `terraform validate` and `terraform plan` run in CI without network.
//!
//! - **Schema-faithful**: it serves the schema of the pinned real provider (8.7.0), derived by
//!   `derive_schema.py` from the `cdktn-provider-google` 21.1.0 wheel in `./dev setup`: every
//!   resource, data source, attribute type, required / optional / computed flag, nested block.
//!   Terraform itself then rejects misspelled or missing arguments, wrong types and unknown
//!   blocks, exactly as it would with the real provider.
//! - **Plans**: computed values the configuration leaves unset are unknown ("known after apply").
//! - **Data sources**: deterministic values of the right type (`fake-<attribute>` strings).
//! - **Never applies**: `ApplyResourceChange` and `ImportResourceState` answer an error.
//!
//! Wiring (`infra/check.sh`): the binary is copied into a filesystem mirror as
//! `registry.terraform.io/hashicorp/google/8.7.0/linux_amd64/terraform-provider-google_v8.7.0_FAKE`
//! and a CLI config names that mirror; `FAKE_GOOGLE_PROVIDER_SCHEMA` names the schema file.
//! The gRPC server is plaintext on loopback, so Terraform runs with `TF_DISABLE_PLUGIN_TLS=1`.

mod msgpack;
mod proto;
mod schema;
mod server;

use std::io::Write;

/// go-plugin's handshake cookie for Terraform providers (a fixed constant, not a secret).
const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
const MAGIC_COOKIE_VALUE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"; // pragma: allowlist secret
const SCHEMA_ENV: &str = "FAKE_GOOGLE_PROVIDER_SCHEMA";
/// The real provider version whose schema this serves; `infra/` pins exactly this version.
const PINNED_PROVIDER_VERSION: &str = "8.7.0";

fn main() {
    if let Err(e) = run() {
        eprintln!("fake-google-provider: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    if std::env::var(MAGIC_COOKIE_KEY).as_deref() != Ok(MAGIC_COOKIE_VALUE) {
        return Err("this is a FAKE Terraform provider plugin (an offline stand-in for hashicorp/google, never used for apply); \
                    Terraform starts it, not a person: see infra/README.md"
            .into());
    }
    if std::env::var_os("PLUGIN_CLIENT_CERT").is_some() {
        return Err("Terraform asked for mTLS; this stand-in serves plaintext gRPC on 127.0.0.1 only: run terraform with TF_DISABLE_PLUGIN_TLS=1".into());
    }
    let path = std::env::var(SCHEMA_ENV)
        .map_err(|_| format!("{SCHEMA_ENV} is not set: it names the schema derived by `./dev setup`"))?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e} (run ./dev setup)"))?;
    let schema = schema::Schema::parse(&text).map_err(|e| format!("{path}: {e}"))?;
    if schema.provider_version != PINNED_PROVIDER_VERSION {
        return Err(format!(
            "{path}: schema of google {}, expected {PINNED_PROVIDER_VERSION} (rerun ./dev setup)",
            schema.provider_version
        ));
    }

    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(|e| format!("tokio: {e}"))?;
    rt.block_on(async {
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("bind 127.0.0.1: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        // go-plugin handshake: core protocol 1, plugin protocol 6, tcp, address, grpc.
        let mut stdout = std::io::stdout();
        writeln!(stdout, "1|6|tcp|{addr}|grpc").and_then(|()| stdout.flush()).map_err(|e| format!("handshake: {e}"))?;
        server::serve(listener, server::Provider::new(schema)).await
    })
}
