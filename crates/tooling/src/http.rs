//! A minimal keep-alive HTTP/1.1 JSON client for the benchmarks, on hyper's client connection.
//!
//! Why not `reqwest`: hyper is already in the tree (axum serves with it), while reqwest would
//! put a second HTTP stack, with its pool and redirect machinery, into the production binary
//! for two benchmarks. A benchmark client needs one connection per load task, kept alive,
//! re-opened after an error: that is all this does.

use std::net::SocketAddr;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// Largest response body read (the API's JSON documents and the console's pages are small).
const RESPONSE_BYTES_MAX: usize = 1 << 20;

/// One keep-alive connection to `addr`, authenticated with a bearer token.
pub struct Client {
    addr: SocketAddr,
    authorization: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    pub fn new(addr: SocketAddr, token: &str) -> Client {
        Client { addr, authorization: format!("Bearer {token}"), sender: None }
    }

    async fn connect(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_some_and(|s| s.is_closed()) {
            self.sender = None;
        }
        if self.sender.is_none() {
            let stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?;
            stream.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            // The connection task ends when the sender is dropped or the server closes.
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        self.sender.as_mut().context("no connection")
    }

    /// POSTs `body` as JSON to `path`; returns the status and the body. On any error the
    /// connection is dropped, so the next call opens a new one.
    pub async fn post_json(
        &mut self,
        path: &str,
        idempotency_key: Option<&str>,
        body: &serde_json::Value,
    ) -> anyhow::Result<(u16, Bytes)> {
        let r = self.try_post(path, idempotency_key, body).await;
        if r.is_err() {
            self.sender = None;
        }
        r
    }

    async fn try_post(
        &mut self,
        path: &str,
        idempotency_key: Option<&str>,
        body: &serde_json::Value,
    ) -> anyhow::Result<(u16, Bytes)> {
        let mut req = hyper::Request::post(path)
            .header(hyper::header::HOST, self.addr.to_string())
            .header(hyper::header::AUTHORIZATION, &self.authorization)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        let req = req.body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?;
        let (status, _, body) = self.send_once(req).await?;
        Ok((status, body))
    }

    /// Sends any request (the console's pages and forms: cookies, not the bearer); returns the
    /// status, the headers and the body. On any error the connection is dropped.
    pub async fn send(&mut self, req: hyper::Request<Full<Bytes>>) -> anyhow::Result<(u16, hyper::HeaderMap, Bytes)> {
        let r = self.send_once(req).await;
        if r.is_err() {
            self.sender = None;
        }
        r
    }

    async fn send_once(&mut self, req: hyper::Request<Full<Bytes>>) -> anyhow::Result<(u16, hyper::HeaderMap, Bytes)> {
        let sender = self.connect().await?;
        sender.ready().await?;
        let res = sender.send_request(req).await?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = http_body_util::Limited::new(res.into_body(), RESPONSE_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the response body: {e}"))?
            .to_bytes();
        Ok((status, headers, body))
    }

    /// The address it connects to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
