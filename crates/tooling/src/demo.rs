//! `fintrail up`'s demo data: a few customers with KYC cases in several states, an
//! organization in screening, and a fresh staff admin token. Idempotent: the data is created
//! once (recognized by its e-mail domain); the token is new on every call.

use fintrail_db::{Context, DbRole};
use fintrail_domain::audit::AuditAction;
use fintrail_domain::{KybState, KycState, Role};
use serde_json::json;

use fintrail_api::identity::{insert_token, Issuer};
use fintrail_api::machines::{apply_transition, Machine};
use fintrail_audit::{AuditWriter, NewEvent};

/// The e-mail domain of demo customers (`.invalid`: never deliverable).
pub const DEMO_DOMAIN: &str = "demo.fintrail.invalid";
const ACTOR: &str = "system:demo";
/// Advisory lock key of the seeder ("ftdemo").
const DEMO_LOCK_KEY: i64 = 0x6674_6465_6d6f;

/// What `seed_demo` made.
#[derive(Debug, Clone)]
pub struct DemoInfo {
    /// A fresh admin bearer token (8 hours).
    pub admin_token: String,
    /// Its id.
    pub admin_token_id: i64,
    /// Demo customers.
    pub customer_ids: Vec<i64>,
    /// Demo organization.
    pub organization_id: Option<i64>,
    /// Whether this call created the data (false: it existed).
    pub created: bool,
}

async fn drive<M: Machine>(
    tx: &tokio_postgres::Transaction<'_>,
    audit: &AuditWriter,
    id: i64,
    target: M,
    owner: Option<i64>,
) -> anyhow::Result<()> {
    let mut at = M::INITIAL;
    for next in M::path_from_initial(target).unwrap_or_default() {
        let tid = apply_transition::<M, _>(tx, id, at, next, ACTOR, "demo data", None).await?;
        let ev = NewEvent::allowed(ACTOR, M::ACTION, format!("{}:{id}", M::SUBJECT), M::transition(at, next))
            .on_behalf_of(owner.map(|c| format!("customer:{c}")))
            .change(
                Some(json!({ "state": at.as_str() })),
                Some(json!({ "state": next.as_str(), "transition_id": tid })),
            );
        audit.append(tx, &ev).await?;
        at = next;
    }
    Ok(())
}

/// Seeds the demo data (once) and issues a fresh admin token.
pub async fn seed_demo(ctx: &Context) -> anyhow::Result<DemoInfo> {
    // An administrative session: the demo's actor (`system:demo`) issues the admin token, and
    // the database lets only a credentialed actor do that through the application role.
    let mut client = ctx.db.connect(DbRole::Admin).await?;
    let audit = AuditWriter::new(true);
    let tx = client.transaction().await?;
    // Serialize concurrent seeders (two `fintrail up` racing) for this transaction.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DEMO_LOCK_KEY]).await?;
    let pattern = format!("%@{DEMO_DOMAIN}");
    let existing: Vec<i64> = tx
        .query("SELECT id FROM fintrail.customers WHERE email LIKE $1 ORDER BY id", &[&pattern])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let created = existing.is_empty();
    let mut customer_ids = existing;
    let mut organization_id = tx
        .query_opt(
            "SELECT id FROM fintrail.organizations WHERE registration_number = 'DEMO-0001' ORDER BY id LIMIT 1",
            &[],
        )
        .await?
        .map(|r| r.get(0));
    if created {
        let targets = [
            KycState::Started,
            KycState::DocumentsSubmitted,
            KycState::InReview,
            KycState::Approved,
            KycState::NeedsResubmission,
        ];
        for (i, target) in targets.into_iter().enumerate() {
            let email = format!("customer{}@{DEMO_DOMAIN}", i + 1);
            let cid: i64 = tx
                .query_one(
                    "INSERT INTO fintrail.customers (display_name, email) VALUES ($1, $2) RETURNING id",
                    &[&format!("Demo Customer {}", i + 1), &email],
                )
                .await?
                .get(0);
            audit
                .append(
                    &tx,
                    &NewEvent::allowed(ACTOR, AuditAction::CustomerCreated, format!("customer:{cid}"), None)
                        .on_behalf_of(Some(format!("customer:{cid}"))),
                )
                .await?;
            let case: i64 = tx
                .query_one(
                    "INSERT INTO fintrail.kyc_cases (customer_id, state) VALUES ($1, 'started') RETURNING id",
                    &[&cid],
                )
                .await?
                .get(0);
            audit
                .append(
                    &tx,
                    &NewEvent::allowed(ACTOR, AuditAction::KycCaseCreated, format!("kyc_case:{case}"), None)
                        .on_behalf_of(Some(format!("customer:{cid}"))),
                )
                .await?;
            drive(&tx, &audit, case, target, Some(cid)).await?;
            customer_ids.push(cid);
        }
        let org: i64 = tx
            .query_one(
                "INSERT INTO fintrail.organizations (legal_name, registration_number, country, state) VALUES ('Demo Holdings GmbH', 'DEMO-0001', 'DE', 'registered') RETURNING id",
                &[],
            )
            .await?
            .get(0);
        audit
            .append(
                &tx,
                &NewEvent::allowed(ACTOR, AuditAction::OrganizationCreated, format!("organization:{org}"), None),
            )
            .await?;
        drive(&tx, &audit, org, KybState::PotentialMatch, None).await?;
        organization_id = Some(org);
    }
    let issued = insert_token(
        &audit,
        &tx,
        Role::Admin,
        None,
        "demo-admin",
        8 * 3600,
        &Issuer { actor: ACTOR, permission: None, request_id: None, credential: None },
    )
    .await?;
    tx.commit().await?;
    Ok(DemoInfo { admin_token: issued.token, admin_token_id: issued.token_id, customer_ids, organization_id, created })
}
