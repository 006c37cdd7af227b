//! The router. Every protected route is registered through [`Registry::add`] with exactly one
//! permission; the registry also lists the endpoints for the authorization-matrix test and
//! checks them against the OpenAPI document. Issue 4 adds `wallets::routes(&mut reg)` to
//! [`build`], nothing else.

use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, MethodRouter};
use axum::Router;
use fintrail_domain::Permission;

use crate::auth;
use crate::error::ApiError;
use crate::state::AppState;

/// Largest JSON request body (64 KiB): every JSON request of this API is tiny.
pub const JSON_BODY_MAX_BYTES: usize = 64 * 1024;

/// One protected endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// HTTP method.
    pub method: Method,
    /// Path template (axum syntax, `{id}`).
    pub path: &'static str,
    /// The single permission it requires.
    pub permission: Permission,
}

/// Collects protected routes.
pub struct Registry {
    state: AppState,
    router: Router<AppState>,
    endpoints: Vec<Endpoint>,
}

impl Registry {
    fn new(state: AppState) -> Self {
        Self { state, router: Router::new(), endpoints: Vec::new() }
    }

    /// Registers `route` (a method router for `method`) at `path`, behind authentication and
    /// authorization of `permission`.
    pub fn add(&mut self, method: Method, path: &'static str, permission: Permission, route: MethodRouter<AppState>) {
        assert!(
            !self.endpoints.iter().any(|e| e.method == method && e.path == path),
            "{method} {path} registered twice"
        );
        // route_layer: the last added is the outermost → authn → authz → handler marker.
        let route = route
            .route_layer(from_fn_with_state(self.state.clone(), auth::handler_stage))
            .route_layer(from_fn_with_state((self.state.clone(), permission), auth::authorize))
            .route_layer(from_fn_with_state(self.state.clone(), auth::authenticate));
        self.router = std::mem::take(&mut self.router).route(path, route);
        self.endpoints.push(Endpoint { method, path, permission });
    }
}

/// The full application router and the list of protected endpoints.
pub fn build(state: AppState) -> (Router, Vec<Endpoint>) {
    let mut reg = Registry::new(state.clone());
    crate::identity::routes(&mut reg);
    crate::kyc::routes(&mut reg);
    crate::kyb::routes(&mut reg);
    crate::media::routes(&mut reg);
    crate::audit_api::routes(&mut reg);
    crate::ledger::routes(&mut reg);
    let Registry { router, endpoints, .. } = reg;
    let public = Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(crate::openapi::serve))
        .route("/v1/media/download", get(crate::media::download))
        .merge(crate::internal_jobs::router(
            state.config.jobs_oidc.clone().or_else(fintrail_jobs::oidc::OidcConfig::from_env),
        ))
        // The compliance console: its own session guard and one permission per page (issue #19).
        .merge(crate::console::router(state.clone()).0);
    let limits = state.config.limits;
    let app =
        router.merge(public).fallback(fallback).layer(DefaultBodyLimit::max(JSON_BODY_MAX_BYTES)).with_state(state);
    // request id → access log → timeouts → panic guard → (authn → authz → handler).
    let app = crate::limits::guard(app, limits).layer(from_fn(auth::access_log)).layer(from_fn(auth::request_id));
    (app, endpoints)
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, description = "alive", body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok".into() })
}

/// `GET /healthz` body.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

async fn fallback() -> ApiError {
    ApiError::new(axum::http::StatusCode::NOT_FOUND, "not_found", "no such route")
}
