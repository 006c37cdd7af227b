//! A customer: the profile and KYC cases (`identity.customer.read`); the wallets with their
//! balances and holds (`wallet.read`); one wallet's statement (`ledger.read`). Three pages,
//! one permission each, linked only for roles that hold the target's permission.

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use fintrail_domain::ledger::Currency;
use fintrail_domain::Permission as P;
use maud::{html, Markup};

use crate::host::HostError;
use crate::html::{page, respond, state_badge, time};
use crate::session::{HtmlPath, Viewer};
use crate::Console;

/// Most rows of a list on these pages (cases, holds, statement lines): newest first.
pub const LIST_MAX: i64 = 50;

/// Minor units as a decimal amount, with the currency's own minor units (ISO 4217: JPY 0,
/// EUR 2, BHD 3). A code kept from before migration 0043 that is not assigned has none: its
/// raw minor units are shown as such rather than guessed.
pub fn money(minor: i64, currency: &str) -> String {
    match Currency::parse(currency) {
        Ok(c) => format!("{} {currency}", c.format_minor(i128::from(minor))),
        Err(_) => format!("{minor} minor units {currency}"),
    }
}

/// `GET /console/customers/{id}` (`identity.customer.read`).
pub async fn show(State(console): State<Console>, viewer: Viewer, HtmlPath(id): HtmlPath<i64>) -> Response {
    let r = profile(&console, &viewer, id).await;
    respond(&viewer, r)
}

async fn profile(console: &Console, viewer: &Viewer, id: i64) -> Result<Markup, HostError> {
    let client = console.pool().get().await?;
    let Some(c) = client
        .query_opt("SELECT display_name, email, created_at FROM fintrail.customers WHERE id = $1", &[&id])
        .await?
    else {
        return Err(HostError::new(404, "not_found", "customer not found"));
    };
    let cases = client
        .query(
            "SELECT id, state, updated_at FROM fintrail.kyc_cases WHERE customer_id = $1 ORDER BY id DESC LIMIT $2",
            &[&id, &LIST_MAX],
        )
        .await?;
    drop(client);
    Ok(page(
        &format!("Customer {id}"),
        Some(viewer),
        html! {
            dl.facts {
                dt { "Name" } dd { (c.get::<_, &str>(0)) }
                dt { "E-mail" } dd { (c.get::<_, &str>(1)) }
                dt { "Since" } dd { (time(&c.get::<_, DateTime<Utc>>(2))) }
            }
            @if viewer.may(P::WalletRead) { p { a href={ "/console/customers/" (id) "/wallets" } { "Wallets, balances and holds" } } }
            section aria-labelledby="cases" {
                h2 #cases { "KYC cases" }
                @if cases.is_empty() { p.empty { "No KYC case." } }
                @else {
                    table {
                        caption { "KYC cases, newest first" }
                        thead { tr { th scope="col" { "Case" } th scope="col" { "State" } th scope="col" { "Last change" } } }
                        tbody { @for k in &cases { tr {
                            @let kid: i64 = k.get(0);
                            td { @if viewer.may(P::KycCaseRead) { a href={ "/console/kyc/" (kid) } { "Case " (kid) } } @else { "Case " (kid) } }
                            td { (state_badge(k.get(1))) }
                            td { (time(&k.get::<_, DateTime<Utc>>(2))) }
                        } } }
                    }
                }
            }
        },
    ))
}

/// Whose wallets a page lists: a customer's or an organization's (the wallet `kind`s that
/// have an owner; system wallets have none and no page).
#[derive(Debug, Clone, Copy)]
enum Owner {
    Customer(i64),
    Organization(i64),
}

impl Owner {
    /// The owner's existence probe and its wallets, fixed statements per kind (each planned
    /// once), and the owner's id.
    fn statements(self) -> (&'static str, &'static str, i64) {
        match self {
            Owner::Customer(id) => (
                "SELECT 1 FROM fintrail.customers WHERE id = $1",
                "SELECT id, currency, balance_minor, held_minor, floor_minor, created_at FROM fintrail.wallets \
                 WHERE customer_id = $1 AND kind = 'customer' ORDER BY id LIMIT $2",
                id,
            ),
            Owner::Organization(id) => (
                "SELECT 1 FROM fintrail.organizations WHERE id = $1",
                "SELECT id, currency, balance_minor, held_minor, floor_minor, created_at FROM fintrail.wallets \
                 WHERE organization_id = $1 AND kind = 'organization' ORDER BY id LIMIT $2",
                id,
            ),
        }
    }

    /// The page title's subject.
    fn title(self) -> String {
        match self {
            Owner::Customer(id) => format!("Customer {id}"),
            Owner::Organization(id) => format!("Organization {id}"),
        }
    }
}

/// `GET /console/customers/{id}/wallets` (`wallet.read`).
pub async fn wallets(State(console): State<Console>, viewer: Viewer, HtmlPath(id): HtmlPath<i64>) -> Response {
    let r = wallets_page(&console, &viewer, Owner::Customer(id)).await;
    respond(&viewer, r)
}

/// `GET /console/kyb/{id}/wallets` (`wallet.read`): an organization's wallets and holds.
pub async fn org_wallets(State(console): State<Console>, viewer: Viewer, HtmlPath(id): HtmlPath<i64>) -> Response {
    let r = wallets_page(&console, &viewer, Owner::Organization(id)).await;
    respond(&viewer, r)
}

async fn wallets_page(console: &Console, viewer: &Viewer, owner: Owner) -> Result<Markup, HostError> {
    let client = console.pool().get().await?;
    let (exists, wallets, id) = owner.statements();
    if client.query_opt(exists, &[&id]).await?.is_none() {
        return Err(HostError::new(404, "not_found", format!("{} not found", owner.title())));
    }
    let w = client.query(wallets, &[&id, &LIST_MAX]).await?;
    let ids: Vec<i64> = w.iter().map(|r| r.get(0)).collect();
    let holds = client
        .query(
            "SELECT id, debit_wallet_id, credit_wallet_id, amount_minor, currency, status, expires_at, created_at \
             FROM fintrail.holds WHERE debit_wallet_id = ANY($1) OR credit_wallet_id = ANY($1) ORDER BY id DESC LIMIT $2",
            &[&ids, &LIST_MAX],
        )
        .await?;
    drop(client);
    Ok(page(
        &format!("{}: wallets", owner.title()),
        Some(viewer),
        html! {
            @if w.is_empty() { p.empty { "No wallet." } }
            @else {
                table {
                    caption { "Wallets" }
                    thead { tr { th scope="col" { "Wallet" } th scope="col" { "Balance" } th scope="col" { "Held" } th scope="col" { "Available" } th scope="col" { "Opened" } } }
                    tbody { @for r in &w { tr {
                        @let wid: i64 = r.get(0);
                        @let cur: &str = r.get(1);
                        @let (bal, held): (i64, i64) = (r.get(2), r.get(3));
                        td { @if viewer.may(P::LedgerRead) { a href={ "/console/wallets/" (wid) } { "Wallet " (wid) } } @else { "Wallet " (wid) } }
                        td.num { (money(bal, cur)) }
                        td.num { (money(held, cur)) }
                        td.num { (money(bal - held, cur)) }
                        td { (time(&r.get::<_, DateTime<Utc>>(5))) }
                    } } }
                }
            }
            section aria-labelledby="holds" {
                h2 #holds { "Holds" }
                @if holds.is_empty() { p.empty { "No hold." } }
                @else {
                    table {
                        caption { "Holds on these wallets, newest first" }
                        thead { tr { th scope="col" { "Hold" } th scope="col" { "From" } th scope="col" { "To" } th scope="col" { "Amount" } th scope="col" { "Status" } th scope="col" { "Expires" } } }
                        tbody { @for h in &holds { tr {
                            td { (h.get::<_, i64>(0)) }
                            td { "wallet " (h.get::<_, i64>(1)) }
                            td { "wallet " (h.get::<_, i64>(2)) }
                            td.num { (money(h.get(3), h.get(4))) }
                            td { (h.get::<_, &str>(5)) }
                            td { (time(&h.get::<_, DateTime<Utc>>(6))) }
                        } } }
                    }
                }
            }
        },
    ))
}

/// `GET /console/wallets/{id}` (`ledger.read`): the statement, newest lines first.
pub async fn statement(State(console): State<Console>, viewer: Viewer, HtmlPath(id): HtmlPath<i64>) -> Response {
    let r = statement_page(&console, &viewer, id).await;
    respond(&viewer, r)
}

async fn statement_page(console: &Console, viewer: &Viewer, id: i64) -> Result<Markup, HostError> {
    let client = console.pool().get().await?;
    let Some(w) = client
        .query_opt("SELECT kind, currency, balance_minor, held_minor FROM fintrail.wallets WHERE id = $1", &[&id])
        .await?
    else {
        return Err(HostError::new(404, "not_found", "wallet not found"));
    };
    // One index range (entries_wallet is (wallet_id, id)).
    let lines = client
        .query(
            "SELECT e.id, e.amount_minor, e.balance_after_minor, e.created_at, t.id, t.kind, t.actor \
             FROM fintrail.entries e JOIN fintrail.transfers t ON t.id = e.transfer_id \
             WHERE e.wallet_id = $1 ORDER BY e.id DESC LIMIT $2",
            &[&id, &LIST_MAX],
        )
        .await?;
    drop(client);
    let cur: &str = w.get(1);
    Ok(page(
        &format!("Wallet {id}: statement"),
        Some(viewer),
        html! {
            dl.facts {
                dt { "Kind" } dd { (w.get::<_, &str>(0)) }
                dt { "Balance" } dd { (money(w.get(2), cur)) }
                dt { "Held" } dd { (money(w.get(3), cur)) }
            }
            @if lines.is_empty() { p.empty { "No entry." } }
            @else {
                table {
                    caption { "The " (LIST_MAX) " latest entries" }
                    thead { tr { th scope="col" { "When" } th scope="col" { "Transfer" } th scope="col" { "Kind" } th scope="col" { "Amount" } th scope="col" { "Balance after" } th scope="col" { "Actor" } } }
                    tbody { @for l in &lines { tr {
                        td { (time(&l.get::<_, DateTime<Utc>>(3))) }
                        td { (l.get::<_, i64>(4)) }
                        td { (l.get::<_, &str>(5)) }
                        td.num { (money(l.get(1), cur)) }
                        td.num { (money(l.get(2), cur)) }
                        td { code { (l.get::<_, &str>(6)) } }
                    } } }
                }
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn money_is_exact() {
        assert_eq!(super::money(123_456, "EUR"), "1234.56 EUR");
        assert_eq!(super::money(500, "JPY"), "500 JPY");
        assert_eq!(super::money(-1_001, "BHD"), "-1.001 BHD");
        assert_eq!(super::money(7, "ZZZ"), "7 minor units ZZZ");
        assert_eq!(super::money(-5, "EUR"), "-0.05 EUR");
        assert_eq!(super::money(i64::MIN, "EUR"), "-92233720368547758.08 EUR");
    }
}
