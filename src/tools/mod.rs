//! Operator tools that ship in the binary: traffic simulation (and, later, a fake Cloud API).

pub mod simulate;
