//! The one integration test binary: the real server over HTTP, the store conformance suite,
//! the spool, and property tests.

mod auth;
mod conformance;
mod fixtures;
mod helpers;
mod hostile;
mod ingest;
mod interleaving;
mod keywords;
mod operators;
mod properties;
mod replies;
mod sigterm;
mod spool;
mod sweep;
