//! The image stage: each sandbox's initial guest memory prepared on the host, the
//! partition table and payloads embedded in the monitor (one multiboot2 ELF), and a GRUB
//! ISO around it.
//!
//! - [`assemble`]: the whole `quest-build image` pipeline.
//! - each sandbox's initial memory comes from its runtime ([`crate::runtime`]).
//! - [`embed`]: the table and payloads inside the monitor ELF.
//! - [`iso`]: the GRUB ISO.
//! - [`inspect`]: reading an image back.

pub mod assemble;
pub mod embed;
pub mod inspect;
pub mod iso;

pub use assemble::{build_image, BuiltImage, ImageError, ImageRequest};
