//! `fintrail iam`: least-privilege and privilege-escalation analysis of OpenTofu/Terraform
//! code, offline (issue 7). Pipeline: `source` (parse, file:line) → `eval` (static evaluation,
//! symbolic unknowns) → `model` (effective bindings and other facts) → `roles` (permissions) →
//! `analyze` (rules, exceptions) + `graph` (escalation paths) → `report` (text/json/sarif).
//! Entry points for the binary: [`cli::run`] and [`bench::run`].

pub mod analyze;
pub mod bench;
pub mod cli;
pub mod date;
pub mod eval;
pub mod exceptions;
pub mod graph;
pub mod model;
pub mod report;
pub mod roles;
pub mod shape;
pub mod source;
pub mod value;
