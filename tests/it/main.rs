//! The one integration test binary: the real server over HTTP, the store conformance suite,
//! the spool, and property tests.

mod ambiguous;
mod auth;
mod binary;
mod checks;
mod conformance;
mod conformance_ambiguous;
mod conformance_console;
mod conformance_providers;
mod console;
mod console_browser;
mod doctor;
mod erasure;
mod first_run;
mod fixtures;
mod gateway;
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
mod read_receipts;
mod replies;
mod retention;
mod sigterm;
mod simulate;
mod spool;
mod spool_owner;
mod sweep;
mod webdriver;
mod write_path;
