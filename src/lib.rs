//! mara: several parallel instances of a role on one git repository.
//!
//! The layering runs one way: [`board`] (model and rules, no I/O) ← [`ledger`] (the
//! only writer of `refs/mara/<run>`) ← [`commands`] ← [`cli`] and `main`.
//! [`output`] alone prints; [`context`] alone reads the environment; [`error`] says
//! how a command failed, and `main` alone prints it.

pub mod backoff;
pub mod board;
pub mod cli;
pub mod commands;
pub mod config;
pub mod context;
pub mod error;
pub mod gitcmd;
pub mod glob;
pub mod hooks;
pub mod ids;
pub mod integrate;
pub mod ledger;
pub mod mcp;
pub mod orchestrator;
pub mod output;
pub mod packs;
pub mod paths;
pub mod remote;
pub mod report;
pub mod safepath;
pub mod text;
pub mod trailers;

#[cfg(test)]
mod parser_props;
