//! Outpost's edge node: a caching reverse proxy on Pingora. This crate is a skeleton so far: its
//! configuration (with `--validate`) is real; the proxy, the cache tiers and purging arrive with
//! their own issues (see docs/architecture.md).

pub mod config;
