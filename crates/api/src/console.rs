//! Mounts the compliance console (`fintrail-console`, issue #19) and lends it the API's own
//! code paths through [`fintrail_console::Host`]: the token lookup and its cache, the 401
//! rate limit, `record_denial`, the one transition procedure and the media URL signing. What
//! the console causes is therefore checked and recorded exactly as the API records it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::Extensions;
use axum::Json;
use fintrail_console::{Acting, BoxFut, HostError, Staff};
use fintrail_domain::{KybState, KycState, Permission, Role};

use crate::auth::{Caller, Principal, RequestId};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::media::SignedUrlRequest;
use crate::state::AppState;

/// Lifetime of the signed URLs behind the console's previews (short: each view issues one).
pub const PREVIEW_URL_TTL_SECS: u64 = 60;

/// The console's routes, for [`crate::routes::build`] to merge.
pub fn router(state: AppState) -> (axum::Router<AppState>, Vec<fintrail_console::Page>) {
    fintrail_console::router(Arc::new(ConsoleHost(state)))
}

struct ConsoleHost(AppState);

fn principal(staff: &Staff) -> Principal {
    Principal {
        token_id: staff.token_id,
        role: staff.role,
        customer_id: None,
        label: staff.label.clone(),
        credential: staff.credential.clone(),
    }
}

fn caller(acting: &Acting) -> Caller {
    Caller { principal: principal(&acting.staff), permission: acting.permission, request_id: acting.request_id.clone() }
}

fn host_error(e: ApiError) -> HostError {
    HostError::new(e.status.as_u16(), e.code, e.message)
}

impl fintrail_console::Host for ConsoleHost {
    fn pool(&self) -> &deadpool_postgres::Pool {
        &self.0.pool
    }

    fn audit(&self) -> &fintrail_audit::AuditWriter {
        &self.0.audit
    }

    fn analytics_file(&self) -> std::path::PathBuf {
        self.0.ctx.home.analytics_db()
    }

    fn request_id(&self, ext: &Extensions) -> String {
        ext.get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default()
    }

    fn refuse_unauthenticated(&self, ext: &Extensions) -> Result<(), u64> {
        let ip = crate::refusals::peer_ip(ext.get::<ConnectInfo<SocketAddr>>().map(|c| &c.0));
        if let Err(retry_after) = self.0.refusals.check(ip) {
            return Err(retry_after.as_secs().max(1));
        }
        self.0.refusals.charge(ip);
        Ok(())
    }

    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFut<'a, Result<Option<Staff>, HostError>> {
        Box::pin(async move {
            let hash = crate::tokens::hash(token);
            let p = match self.0.tokens.get(&hash) {
                Some(p) => p,
                None => match crate::auth::lookup_token(&self.0, &hash).await.map_err(host_error)? {
                    Ok((p, valid_for)) => {
                        self.0.tokens.put(hash, &p, valid_for);
                        p
                    }
                    Err(_) => return Ok(None),
                },
            };
            if p.customer_id.is_some() || p.role == Role::Customer {
                return Err(HostError::new(403, "forbidden", "the console is for staff tokens"));
            }
            let credential = Some(fintrail_audit::Credential::new(token));
            Ok(Some(Staff { token_id: p.token_id, role: p.role, label: p.label, credential }))
        })
    }

    fn actor(&self, staff: &Staff) -> String {
        principal(staff).actor()
    }

    fn record_denial<'a>(
        &'a self,
        staff: &'a Staff,
        missing: Permission,
        subject: String,
        request_id: &'a str,
    ) -> BoxFut<'a, Result<(), HostError>> {
        Box::pin(async move {
            crate::auth::record_denial(&self.0, &principal(staff), missing, subject, request_id)
                .await
                .map_err(host_error)
        })
    }

    fn transition_kyc<'a>(
        &'a self,
        acting: &'a Acting,
        case_id: i64,
        to: KycState,
        reason: &'a str,
    ) -> BoxFut<'a, Result<(), HostError>> {
        Box::pin(async move {
            crate::transition::transition::<KycState>(&self.0, &caller(acting), case_id, None, to, reason)
                .await
                .map(|_| ())
                .map_err(host_error)
        })
    }

    fn transition_kyb<'a>(
        &'a self,
        acting: &'a Acting,
        org_id: i64,
        to: KybState,
        reason: &'a str,
    ) -> BoxFut<'a, Result<(), HostError>> {
        Box::pin(async move {
            crate::transition::transition::<KybState>(&self.0, &caller(acting), org_id, None, to, reason)
                .await
                .map(|_| ())
                .map_err(host_error)
        })
    }

    fn media_url<'a>(&'a self, acting: &'a Acting, media_id: i64) -> BoxFut<'a, Result<String, HostError>> {
        Box::pin(async move {
            let body = SignedUrlRequest { ttl_secs: Some(PREVIEW_URL_TTL_SECS) };
            crate::media::signed_url(State(self.0.clone()), caller(acting), ApiPath(media_id), ApiJson(body))
                .await
                .map(|Json(u)| u.url)
                .map_err(host_error)
        })
    }
}
