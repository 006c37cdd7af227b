//! The OpenAPI document, derived from the handlers' `#[utoipa::path]` attributes and the
//! request/response types, so it cannot drift from the code (a test also checks every
//! registered endpoint appears in it with its permission).

use axum::Json;
use fintrail_domain::ledger::Currency;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "fintrail API", description = "Identity, KYC/KYB, media and the audit trail. Every protected endpoint requires exactly one permission."),
    paths(
        crate::routes::healthz,
        crate::identity::me,
        crate::identity::create_customer,
        crate::identity::get_customer,
        crate::identity::issue_customer_token,
        crate::identity::revoke_token,
        crate::kyc::create_own_case,
        crate::kyc::get_own_case,
        crate::kyc::submit_own_case,
        crate::kyc::get_case,
        crate::kyc::review_case,
        crate::kyb::create_organization,
        crate::kyb::get_organization,
        crate::kyb::screening,
        crate::kyb::decision,
        crate::media::upload,
        crate::media::signed_url,
        crate::media::download,
        crate::audit_api::list_events,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as JSON.
pub fn document() -> serde_json::Value {
    let mut doc =
        serde_json::to_value(ApiDoc::openapi().merge_from(crate::ledger::LedgerDoc::openapi())).unwrap_or_default();
    exact_integers(&mut doc);
    assigned_currencies(&mut doc);
    rate_limited_401s(&mut doc);
    doc
}

/// Every operation that can answer 401 can also answer 429: unauthenticated refusals are
/// rate-limited per client address (`crate::refusals`). Stated here once rather than in each
/// handler's attribute; the body is the same JSON error as the 401's.
fn rate_limited_401s(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(serde_json::Value::as_object_mut) else { return };
    for item in paths.values_mut() {
        let Some(ops) = item.as_object_mut() else { continue };
        for op in ops.values_mut() {
            let Some(responses) = op.get_mut("responses").and_then(serde_json::Value::as_object_mut) else { continue };
            if let Some(mut r) = responses.get("401").cloned() {
                r["description"] = "too many refused unauthenticated requests from this address (`Retry-After`)".into();
                responses.entry("429").or_insert(r);
            }
        }
    }
}

/// What every `integer` of the document says about its spelling.
pub const INTEGER_NOTE: &str = "An integer written without fraction or exponent (`42`, not `42.0` or `4.2e1`).";

/// Request bodies take integers only as integer literals (`crate::ledger::de`, issue 16 item
/// 11), while JSON Schema's `integer` also admits `42.0`. So that a client following the
/// schema never sends a float spelling, every `integer` schema states its bounds as JSON
/// integers (utoipa writes `#[schema(minimum = 1)]` as `1.0`, which a generator may copy as a
/// boundary value verbatim) and carries [`INTEGER_NOTE`] in its description. JSON Schema has no
/// keyword that refuses `42.0` (`multipleOf: 1` admits it), hence the description.
fn exact_integers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let is_int = m
                .get("type")
                .is_some_and(|t| t == "integer" || t.as_array().is_some_and(|a| a.iter().any(|x| x == "integer")));
            if is_int {
                for k in ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"] {
                    if let Some(b) = m.get_mut(k) {
                        if let Some(f) = b.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15) {
                            // Integral and far inside i64 (checked above): the cast is exact.
                            #[allow(clippy::cast_possible_truncation)]
                            let i = f as i64;
                            *b = Value::from(i);
                        }
                    }
                }
                let d = match m.get("description").and_then(Value::as_str) {
                    Some(d) if !d.contains(INTEGER_NOTE) => format!("{d} {INTEGER_NOTE}"),
                    Some(d) => d.to_owned(),
                    None => INTEGER_NOTE.to_owned(),
                };
                m.insert("description".into(), Value::from(d));
            }
            m.values_mut().for_each(exact_integers);
        }
        Value::Array(a) => a.iter_mut().for_each(exact_integers),
        _ => {}
    }
}

/// What every request's currency field says about the codes it admits.
pub const CURRENCY_NOTE: &str =
    "An assigned ISO 4217 code (the `enum`: fintrail's table, crates/domain/data/iso4217.csv); any other is a 422.";

/// Request fields take assigned ISO 4217 codes only (`Currency::parse`, issue 16 item 7), while
/// the pattern `^[A-Z]{3}$` also admits `ZZZ`: every schema with that pattern also lists the
/// codes (`enum`, from the one table) and says so. Responses keep the bare string: a wallet
/// opened before migration 0043 may still carry an unassigned code.
fn assigned_currencies(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            if m.get("pattern").and_then(Value::as_str) == Some(crate::ledger::CURRENCY_PATTERN) {
                let codes: Vec<Value> = Currency::all().map(|c| Value::from(c.as_str())).collect();
                m.insert("enum".into(), Value::from(codes));
                let d = match m.get("description").and_then(Value::as_str) {
                    Some(d) => format!("{d} {CURRENCY_NOTE}"),
                    None => CURRENCY_NOTE.to_owned(),
                };
                m.insert("description".into(), Value::from(d));
            }
            m.values_mut().for_each(assigned_currencies);
        }
        Value::Array(a) => a.iter_mut().for_each(assigned_currencies),
        _ => {}
    }
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<serde_json::Value> {
    Json(document())
}
