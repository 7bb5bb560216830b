//! `quest-abi`: the single definition of everything that crosses a Quest boundary.
//!
//! The host tool (`quest-build`) writes a *partition table* with [`encode()`], the monitor
//! reads it back with [`validate()`]; both sides run the same structural checks, so nothing
//! is "kept in sync" by hand. The crate is `no_std`, allocates nothing and contains no
//! `unsafe`: every structure is plain little-endian data described with `zerocopy`.
//!
//! Modules:
//! - [`addr`]: address and index newtypes ([`GuestPhysAddr`], [`HostPhysAddr`],
//!   [`SandboxId`], [`CoreId`]).
//! - [`table`]: the binary partition table (header and entry arrays).
//! - [`mod@encode`]: writing a table into a caller-provided buffer.
//! - [`mod@validate`]: checking a table and viewing it without copying.
//! - [`view`]: the typed read view of a validated table ([`TableView`]).
//! - [`layout`]: every fixed guest-physical address, one doc line each.
//! - [`gdt`]: the launch GDT (descriptors, selectors, access rights).
//! - [`memory`]: the host memory a system needs (2 MiB granules, the first MiB).
//! - [`pci`]: PCI configuration space registers and mechanism #1's address.
//! - [`hypercall`]: hypercall numbers and their register conventions.
//! - [`bootinfo`]: the boot information block a `bare` sandbox receives.
//! - [`args`]: the argument block (`args`, `env`) a `bare` sandbox receives.
//! - [`directory`]: the channel directory every sandbox finds at a fixed address.
//! - [`console`]: the monitor's console records the host reads (printer and parser).
//! - [`calibration`]: the read-only page of platform constants measured at boot.
//! - `testing` (feature `testing`, for tests only): the one sample table.
#![no_std]
#![forbid(unsafe_code)]

pub mod addr;
pub mod args;
pub mod bootinfo;
pub mod calibration;
pub mod console;
pub mod directory;
pub mod encode;
pub mod gdt;
pub mod hypercall;
pub mod latency;
pub mod layout;
pub mod memory;
pub mod pci;
pub mod table;
#[cfg(feature = "testing")]
pub mod testing;
pub mod validate;
pub mod view;

pub use addr::{CoreId, GuestPhysAddr, HostPhysAddr, SandboxId};
pub use encode::{encode, encoded_len, EncodeError, TableParts};
pub use table::*;
pub use validate::{validate, AbiError, Table};
pub use view::TableView;

/// Copies `s` into a fixed, NUL-padded name field. Fails if it does not fit (a name
/// must leave room for at least one NUL so C-style readers terminate).
pub fn name_field(s: &str) -> Option<[u8; NAME_LEN]> {
    let bytes = s.as_bytes();
    if bytes.is_empty() || bytes.len() >= NAME_LEN || bytes.contains(&0) {
        return None;
    }
    let mut out = [0u8; NAME_LEN];
    out[..bytes.len()].copy_from_slice(bytes);
    Some(out)
}

/// Reads a NUL-padded name field back as UTF-8 (`None` if it is not valid).
pub fn name_str(field: &[u8; NAME_LEN]) -> Option<&str> {
    let len = field.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
    if field[len..].iter().any(|&b| b != 0) {
        return None;
    }
    core::str::from_utf8(&field[..len]).ok()
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let f = name_field("ping").unwrap();
        assert_eq!(name_str(&f), Some("ping"));
        assert!(name_field("").is_none());
        assert!(name_field(&"x".repeat(NAME_LEN)).is_none());
        assert!(name_field("a\0b").is_none());
        let mut bad = f;
        bad[10] = b'x';
        assert_eq!(name_str(&bad), None, "bytes after the NUL are rejected");
    }
}

#[cfg(test)]
mod tests;
