//! `quest-build`: turns a partition manifest into one bootable multikernel image.
//!
//! Data flows one way: `manifest` (parse, validate) -> `plan` (pure layout) -> `build`
//! (cargo per application) -> `image` (one multiboot2 ELF and a GRUB ISO) -> `run`.

pub mod bounds;
pub mod build;
pub mod cli;
pub mod image;
pub mod manifest;
pub mod plan;
pub mod run;
pub mod runtime;
pub mod scaffold;
#[cfg(test)]
mod scratch;
