//! The one integration test binary: the real server over HTTP, the store conformance suite,
//! the spool, and property tests.

mod ambiguous;
mod auth;
mod checks;
mod conformance;
mod conformance_ambiguous;
mod conformance_providers;
mod erasure;
mod fixtures;
mod hardening;
mod helpers;
mod hostile;
mod ingest;
mod interleaving;
mod keywords;
mod observability;
mod openapi;
mod operators;
mod properties;
mod replies;
mod retention;
mod sigterm;
mod spool;
mod spool_owner;
mod sweep;
mod write_path;
