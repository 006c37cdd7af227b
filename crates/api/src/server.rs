//! Starting and stopping the HTTP server and its background tasks (the audit sequencer and
//! periodic signed checkpoints).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use fintrail_db::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::routes::{self, Endpoint};
use crate::state::{AppConfig, AppState};
use fintrail_audit::chain::Sequencer;
use fintrail_audit::checkpoint;

/// How long the sequencer sleeps when nothing woke it (bounds chaining latency).
pub const SEQUENCER_IDLE_MS: u64 = 200;
/// Least time between two sequencer rounds: batches links under load instead of one small
/// transaction per committed request.
pub const SEQUENCER_MIN_INTERVAL_MS: u64 = 100;
/// How long shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    background: Vec<JoinHandle<()>>,
    /// The state (tests inspect it).
    pub state: AppState,
    /// The protected endpoints (tests iterate them).
    pub endpoints: Vec<Endpoint>,
}

impl ServerHandle {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Graceful shutdown: stop accepting, finish in-flight requests, chain what committed.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        match tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), self.server).await {
            Ok(joined) => joined.context("server task")?.context("server")?,
            Err(_) => tracing::warn!(log_class = "app", "shutdown grace period elapsed"),
        }
        for t in self.background {
            let _ = tokio::time::timeout(Duration::from_millis(SHUTDOWN_GRACE_MS), t).await;
        }
        tracing::info!(log_class = "app", "server stopped");
        Ok(())
    }
}

/// Starts the API on `listen` with the default configuration (`fintrail up`).
pub async fn start_server(ctx: &Context, listen: SocketAddr) -> anyhow::Result<ServerHandle> {
    start_with(ctx, listen, AppConfig::default()).await
}

/// Starts the API with `config`.
pub async fn start_with(ctx: &Context, listen: SocketAddr, config: AppConfig) -> anyhow::Result<ServerHandle> {
    let state = AppState::new(ctx, config.clone())?;
    let (app, endpoints) = routes::build(state.clone());
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let mut rx = stop_rx.clone();
    let limits = config.limits;
    let server = tokio::spawn(async move {
        serve(listener, app, limits, async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await
    });
    let mut background = Vec::new();
    if config.audit_enabled {
        background.push(tokio::spawn(refusal_task(state.clone(), stop_rx.clone())));
    }
    if config.run_sequencer && config.audit_enabled {
        background.push(tokio::spawn(sequencer_task(state.clone(), stop_rx.clone())));
    }
    if config.checkpoint_interval_secs > 0 && config.audit_enabled {
        background.push(tokio::spawn(checkpoint_task(state.clone(), stop_rx.clone())));
    }
    tracing::info!(log_class = "app", %addr, "fintrail API listening");
    Ok(ServerHandle { addr, stop, server, background, state, endpoints })
}

/// Serves `app` on `listener` until `shutdown` completes, then waits for the open connections
/// to finish their in-flight requests. Like `axum::serve` (HTTP/1, one task per connection,
/// upgrades), plus what it lacks: hyper's header-read timeout (`limits.header_read`, with a
/// Tokio timer) and the peer address as `ConnectInfo<SocketAddr>` (the refusal rate limit).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: crate::limits::Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (closing_tx, closing_rx) = watch::channel(false);
    // Every connection task holds a clone of `done_rx`; `done_tx.closed()` resolves when all
    // of them ended.
    let (done_tx, done_rx) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(log_class = "app", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(remote));
            let mut app = app.clone();
            tower_service::Service::call(&mut app, req.map(axum::body::Body::new))
        });
        let mut closing = closing_rx.clone();
        let done = done_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.header_read);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).with_upgrades();
            tokio::pin!(conn);
            // (The watch guard is dropped inside the block: it must not live across an await.)
            let closing = async move {
                let _ = closing.wait_for(|c| *c).await.map(|_| ());
            };
            let ended = tokio::select! {
                r = conn.as_mut() => Some(r),
                () = closing => None,
            };
            let ended = match ended {
                Some(r) => r,
                None => {
                    // Finish the request in flight, accept no other on this connection.
                    conn.as_mut().graceful_shutdown();
                    conn.as_mut().await
                }
            };
            if let Err(e) = ended {
                // Header-read timeouts end here too (hyper closes the connection).
                tracing::debug!(log_class = "app", error = %e, %remote, "connection ended with an error");
            }
            drop(done);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

/// Writes the refused unauthenticated downloads of each window as one event
/// ([`crate::refusals`]), and the last window at shutdown.
async fn refusal_task(state: AppState, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(state.config.refusal_window_secs.max(1));
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(every) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        if let Err(e) = crate::refusals::write_window(&state).await {
            tracing::warn!(log_class = "app", error = e.message, "writing the refusal summary failed");
        }
        if stopping {
            return;
        }
    }
}

async fn sequencer_task(state: AppState, mut stop: watch::Receiver<bool>) {
    let wake = state.audit.chain_wakeup();
    let mut seq: Option<Sequencer> = None;
    loop {
        if seq.is_none() {
            match Sequencer::try_open(&state.ctx.db).await {
                Ok(s) => seq = s,
                Err(e) => tracing::warn!(log_class = "app", error = %e, "audit sequencer: cannot open"),
            }
        }
        if let Some(s) = seq.as_mut() {
            if let Err(e) = s.run_once().await {
                tracing::warn!(log_class = "app", error = %e, "audit sequencer: round failed; reconnecting");
                seq = None;
            }
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(SEQUENCER_MIN_INTERVAL_MS)) => {}
            _ = stop.changed() => {}
        }
        // Another process holds the sequencer lock: retry rarely.
        let idle = if seq.is_some() { SEQUENCER_IDLE_MS } else { 5_000 };
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(idle)) => {}
            _ = stop.changed() => {}
        }
    }
}

async fn checkpoint_task(state: AppState, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(state.config.checkpoint_interval_secs);
    let dir = checkpoint::checkpoint_dir(&state.ctx.home);
    let mut last: Option<i64> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let head = match state.pool.get().await {
            Ok(c) => fintrail_audit::chain::head(&c).await.ok().map(|h| h.0),
            Err(_) => None,
        };
        if head.is_none() || head == last || head == Some(0) {
            continue;
        }
        match checkpoint::write(&state.ctx, &dir).await {
            Ok((cp, _)) => last = Some(cp.seq),
            Err(e) => tracing::warn!(log_class = "app", error = %e, "automatic audit checkpoint failed"),
        }
    }
}

/// Waits for Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
