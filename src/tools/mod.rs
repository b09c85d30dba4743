//! Operator tools that ship in the binary: traffic simulation and a fake Cloud API.

pub mod fake_cloud_api;
pub mod simulate;
