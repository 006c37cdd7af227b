//! The OpenAPI document, derived from the handlers' `#[utoipa::path]` attributes and the
//! request/response types, so it cannot drift from the code (a test also checks every
//! registered endpoint appears in it with its permission).

use axum::Json;
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
    serde_json::to_value(ApiDoc::openapi().merge_from(crate::ledger::LedgerDoc::openapi())).unwrap_or_default()
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<serde_json::Value> {
    Json(document())
}
