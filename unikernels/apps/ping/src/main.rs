//! PLACEHOLDER so that `partition-manifests/pingpong.toml` names a real Cargo package with
//! a binary target; the channels engineer replaces it with the real ping application.

fn main() {}
