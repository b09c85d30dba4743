//! The WhatsApp side: webhook signatures and payload parsers for the Cloud API and WASender.

pub mod cloud;
pub mod signature;
pub mod wasender;

pub use cloud::PayloadError;
