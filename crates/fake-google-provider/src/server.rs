//! gRPC over HTTP/2 (plaintext, loopback), by hand on `h2`: each call is one request message and
//! one response message, framed as gRPC does (1 byte compression flag, 4 bytes length). Calls the
//! stand-in does not serve answer status UNIMPLEMENTED, which Terraform and go-plugin accept for
//! the optional ones (stdio forwarding, the broker, metadata).

use crate::msgpack;
use crate::proto::{self, Msg};
use crate::schema::{self, Schema};
use bytes::Bytes;
use std::sync::Arc;

/// Limit: the largest request accepted (plan values of one resource are far smaller).
const MAX_REQUEST_BYTES: usize = 64 << 20;
const GRPC_OK: u32 = 0;
const GRPC_INVALID_ARGUMENT: u32 = 3;
const GRPC_UNIMPLEMENTED: u32 = 12;

pub struct Provider {
    schema: Schema,
    /// `GetProviderSchema.Response`, encoded once: Terraform asks on every start.
    schema_response: Vec<u8>,
}

impl Provider {
    pub fn new(schema: Schema) -> Provider {
        let schema_response = schema::provider_schema_response(&schema);
        Provider { schema, schema_response }
    }

    /// Answers one unary call: `Ok(Some(bytes))` a response, `Ok(None)` UNIMPLEMENTED.
    fn call(&self, method: &str, req: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let empty = Vec::new(); // every field default: no diagnostics
        Ok(Some(match method {
            "/grpc.health.v1.Health/Check" => vec![0x08, 0x01], // status SERVING
            "/tfplugin6.Provider/GetProviderSchema" => self.schema_response.clone(),
            "/tfplugin6.Provider/ValidateProviderConfig"
            | "/tfplugin6.Provider/ValidateResourceConfig"
            | "/tfplugin6.Provider/ValidateDataResourceConfig"
            | "/tfplugin6.Provider/ConfigureProvider"
            | "/tfplugin6.Provider/GetFunctions"
            | "/tfplugin6.Provider/StopProvider"
            | "/plugin.GRPCController/Shutdown" => empty,
            "/tfplugin6.Provider/PlanResourceChange" => self.plan_resource_change(req)?,
            "/tfplugin6.Provider/ReadDataSource" => self.read_data_source(req)?,
            "/tfplugin6.Provider/ReadResource" => {
                // The state is what it was: there is no API to refresh from.
                let state = proto::field_bytes(req, 2).map_err(|e| e.0)?.unwrap_or_default();
                let mut m = Msg::default();
                m.bytes(1, state);
                m.0
            }
            "/tfplugin6.Provider/UpgradeResourceState" => {
                // RawState.json (field 1 of field 3) → DynamicValue.json (field 2): unchanged.
                let raw = proto::field_bytes(req, 3).map_err(|e| e.0)?.unwrap_or_default();
                let json = proto::field_bytes(raw, 1).map_err(|e| e.0)?.unwrap_or_default();
                let mut dv = Msg::default();
                dv.bytes(2, json);
                let mut m = Msg::default();
                m.message(1, &dv);
                m.0
            }
            "/tfplugin6.Provider/ApplyResourceChange" | "/tfplugin6.Provider/ImportResourceState" => {
                let field = if method.ends_with("ApplyResourceChange") { 3 } else { 2 };
                let mut m = Msg::default();
                m.message(
                    field,
                    &proto::error_diagnostic(
                        "fake-google-provider never applies",
                        "This is the FAKE offline stand-in for hashicorp/google, for validate and plan only. Apply with the real provider.",
                    ),
                );
                m.0
            }
            _ => return Ok(None),
        }))
    }

    /// Plans a managed resource: `PlanResourceChange.Request.proposed_new_state` (field 3) →
    /// `Response.planned_state` (field 1). A destroy (proposed null) plans null.
    fn plan_resource_change(&self, req: &[u8]) -> Result<Vec<u8>, String> {
        transform(req, 3, &self.schema.resources, schema::plan)
    }

    /// Reads a data source: `ReadDataSource.Request.config` (field 2) → `Response.state` (field 1).
    fn read_data_source(&self, req: &[u8]) -> Result<Vec<u8>, String> {
        transform(req, 2, &self.schema.data_sources, schema::read_data_source)
    }
}

/// Decodes the value in DynamicValue field `value_field` of a request whose field 1 names the
/// type, applies `f` with that type's schema, and answers it in the response's field 1.
fn transform(
    req: &[u8],
    value_field: u32,
    types: &std::collections::BTreeMap<String, schema::Block>,
    f: fn(&schema::Block, &mut msgpack::Value),
) -> Result<Vec<u8>, String> {
    let type_name = proto::field_string(req, 1).map_err(|e| e.0)?;
    let block = types.get(&type_name).ok_or_else(|| format!("unknown type {type_name}"))?;
    let bytes = proto::dynamic_value_msgpack(req, value_field).map_err(|e| e.0)?.ok_or("no value in the request")?;
    let mut value = msgpack::decode(bytes).map_err(|e| format!("{type_name}: {}", e.0))?;
    f(block, &mut value);
    let mut m = Msg::default();
    m.message(1, &proto::dynamic_value(&msgpack::to_bytes(&value)));
    Ok(m.0)
}

fn grpc_frame(message: &[u8]) -> Bytes {
    let len = u32::try_from(message.len()).expect("gRPC messages are under 4 GiB");
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0); // not compressed
    out.extend(len.to_be_bytes());
    out.extend_from_slice(message);
    Bytes::from(out)
}

fn trailers(status: u32, message: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("grpc-status", http::HeaderValue::from(status));
    if let Ok(v) = http::HeaderValue::from_str(&message.replace(['\r', '\n'], " ")) {
        if !message.is_empty() {
            h.insert("grpc-message", v);
        }
    }
    h
}

async fn read_body(mut body: h2::RecvStream) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        let _ = body.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
        if buf.len() > MAX_REQUEST_BYTES {
            return Err(format!("request over {MAX_REQUEST_BYTES} bytes"));
        }
    }
    // One gRPC frame: flag 0 (no compression), length, message.
    if buf.len() < 5 || buf[0] != 0 {
        return Err("expected one uncompressed gRPC message".into());
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if buf.len() != 5 + len {
        return Err(format!("gRPC frame says {len} bytes, body holds {}", buf.len() - 5));
    }
    buf.drain(..5);
    Ok(buf)
}

async fn handle(
    provider: Arc<Provider>,
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let method = req.uri().path().to_string();
    let ok = || {
        http::Response::builder()
            .status(200)
            .header("content-type", "application/grpc")
            .body(())
            .expect("static response")
    };
    // Streams (stdio, broker) never end their request: answer them before reading a body.
    let known = method.starts_with("/tfplugin6.Provider/")
        || method == "/grpc.health.v1.Health/Check"
        || method == "/plugin.GRPCController/Shutdown";
    let outcome = if known {
        match read_body(req.into_body()).await {
            Ok(body) => provider.call(&method, &body).map_err(|e| (GRPC_INVALID_ARGUMENT, e)),
            Err(e) => Err((GRPC_INVALID_ARGUMENT, e)),
        }
    } else {
        Ok(None)
    };
    let (status, message, body) = match outcome {
        Ok(Some(body)) => (GRPC_OK, String::new(), Some(body)),
        Ok(None) => (GRPC_UNIMPLEMENTED, format!("{method} is not served by the fake google provider"), None),
        Err((code, e)) => (code, format!("fake-google-provider: {e}"), None),
    };
    let Ok(mut send) = respond.send_response(ok(), false) else { return };
    if let Some(body) = body {
        if send.send_data(grpc_frame(&body), false).is_err() {
            return;
        }
    }
    let _ = send.send_trailers(trailers(status, &message));
    if method == "/plugin.GRPCController/Shutdown" {
        std::process::exit(0);
    }
}

pub async fn serve(listener: tokio::net::TcpListener, provider: Provider) -> Result<(), String> {
    let provider = Arc::new(provider);
    loop {
        let (socket, _) = listener.accept().await.map_err(|e| format!("accept: {e}"))?;
        let provider = provider.clone();
        tokio::spawn(async move {
            let Ok(mut conn) = h2::server::Builder::new().max_frame_size(1 << 20).handshake::<_, Bytes>(socket).await
            else {
                return;
            };
            while let Some(Ok((req, respond))) = conn.accept().await {
                tokio::spawn(handle(provider.clone(), req, respond));
            }
        });
    }
}
