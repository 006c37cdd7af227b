//! `fintrail trace`: every change traceable from task to commit to infrastructure.
//!
//! - [`message`]: what a commit message references (task trailers, `#123`, approvers, reverts);
//! - [`git`]: history read by running `git log -z` (paths as raw bytes);
//! - [`trace`]: the rules (task required; approver for sensitive paths; merges; reverts);
//! - [`report`]: task → commits → paths and path → tasks, as text, JSON, Markdown, audit JSONL;
//! - [`hook`]: the `commit-msg` hook;
//! - [`tracker`]: ClickUp and GitHub adapters behind one trait;
//! - [`cli`]: the `fintrail trace` subcommands.

pub mod bench;
pub mod cli;
pub mod config;
pub mod git;
pub mod glob;
pub mod hook;
pub mod message;
pub mod report;
pub mod trace;
pub mod tracker;
