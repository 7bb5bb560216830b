//! Partition manifests: parsing (with spans), validation (all errors at once) and
//! diagnostics (`file:line:col`, the source line, a caret, a hint).

pub mod types;

pub use types::*;
