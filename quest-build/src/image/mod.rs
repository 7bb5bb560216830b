//! The image stage: each sandbox's initial guest memory prepared on the host, the
//! partition table and payloads embedded in the monitor (one multiboot2 ELF), and a GRUB
//! ISO around it.
//!
//! - [`assemble`]: the whole `quest-build image` pipeline.
//! - [`elf`]: loading and relocating an application ELF.
//! - [`bare`]: a bare sandbox's initial memory (GDT, page tables, boot info, image).
//! - [`paging`]: guest identity page tables.
//! - [`embed`]: the table and payloads inside the monitor ELF.
//! - [`iso`]: the GRUB ISO.
//! - [`inspect`]: reading an image back.

pub mod assemble;
pub mod bare;
pub mod elf;
pub mod embed;
pub mod inspect;
pub mod iso;
pub mod paging;

pub use assemble::{build_image, BuiltImage, ImageError, ImageRequest};

#[cfg(test)]
pub(crate) mod testing;
