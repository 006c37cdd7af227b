//! The console's page registry: [`Pages::add`] is the only way to add a protected page or
//! action, and it puts the session guard (authentication, CSRF, the one permission) in front
//! of it. The list it returns is what the authorization-matrix test iterates.

use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::routing::MethodRouter;
use axum::Router;
use fintrail_domain::Permission;

use crate::{session, Console};

/// One protected page or action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// HTTP method (`GET` pages, `POST` actions).
    pub method: Method,
    /// Path template (axum syntax).
    pub path: &'static str,
    /// The one permission it requires.
    pub permission: Permission,
}

/// Collects the protected routes.
pub struct Pages {
    console: Console,
    router: Router<Console>,
    pages: Vec<Page>,
}

impl Pages {
    pub(crate) fn new(console: Console) -> Self {
        Self { console, router: Router::new(), pages: Vec::new() }
    }

    /// Registers `route` (for `method`) at `path`, behind the session guard and `permission`.
    pub fn add(&mut self, method: Method, path: &'static str, permission: Permission, route: MethodRouter<Console>) {
        assert!(!self.pages.iter().any(|p| p.method == method && p.path == path), "{method} {path} registered twice");
        assert!(path.starts_with("/console/"), "{path}: console pages live under /console/");
        let route = route.route_layer(from_fn_with_state((self.console.clone(), permission), session::guard));
        self.router = std::mem::take(&mut self.router).route(path, route);
        self.pages.push(Page { method, path, permission });
    }

    pub(crate) fn finish(self) -> (Router<Console>, Vec<Page>) {
        (self.router, self.pages)
    }
}
