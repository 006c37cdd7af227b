//! Runs the CDC benches without the `fintrail` binary (the lead wires them into
//! `fintrail bench cdc|cdc-impact`): `cargo run --release -p fintrail-cdc --example bench -- cdc`.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    /// `cdc` or `cdc-impact`
    name: String,
    #[command(flatten)]
    args: fintrail_cdc::bench::BenchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let home = fintrail_db::Home::from_env()?;
    match cli.name.as_str() {
        "cdc" => fintrail_cdc::bench::cdc(cli.args, &home).await,
        "cdc-impact" => fintrail_cdc::bench::cdc_impact(cli.args, &home).await,
        other => anyhow::bail!("unknown bench {other}"),
    }
}
