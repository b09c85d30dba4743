//! replyd: between WhatsApp and a business's bot, every inbound message reaches exactly one
//! recorded outcome — replied once, deliberately silent, or dead-lettered.

pub mod app;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod offline;
pub mod operators;
pub mod progress;
pub mod retention;
pub mod secret;
pub mod secrets_file;
pub mod store;
pub mod supervise;
pub mod sweep;
pub mod tools;
pub mod whatsapp;
pub mod worker;
