//! Code shared by the `edge` and `origin` crates. Kept deliberately small: a type moves here only
//! when both crates need it.

pub mod access_log;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod purge;
pub mod tls;
