//! Operator tools that ship in the binary: traffic simulation, a fake Cloud API, and doctor.

pub mod doctor;
pub mod fake_cloud_api;
pub mod simulate;
