//! `fintrail cdc`: PostgreSQL logical replication (pgoutput) into the analytics store, with
//! zero impact on the transactional database (see `.notes/cdc.md`).

pub mod bench;
pub mod cli;
pub mod model;
pub mod pgoutput;
pub mod pipeline;
pub mod policy;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod status;

pub use cli::{run_analytics, run_cdc};

/// Used by `fintrail up`: the pipeline into `FINTRAIL_HOME/analytics.duckdb` with the
/// checked-in policy, until `shutdown`; then it commits what is complete and confirms it.
pub async fn run_pipeline(
    ctx: &fintrail_db::Context,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let policy = policy::Policy::load(None)?;
    cli::run_with(ctx, &policy, &ctx.home.analytics_db(), pipeline::Options::default(), shutdown).await
}
