//! The WhatsApp side: webhook signatures and payload parsers for the Cloud API and WASender.

pub mod cloud;
pub mod errors;
pub mod send;
pub mod signature;
pub mod wasender;

pub use cloud::PayloadError;
pub use errors::{FailureClass, RetryHint};
pub use send::{Accepted, CloudClient, SendError, TextReply};
