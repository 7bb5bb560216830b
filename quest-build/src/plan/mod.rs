//! The planner: `Manifest -> Plan`, pure and deterministic, and the plan's encoding as
//! the `quest-abi` partition table.

pub mod types;

pub use types::*;
