//! PCI configuration space through configuration mechanism #1 (PCI Local Bus
//! Specification 3.0, 3.2.2.3.2): a driver writes a function's register address to port
//! 0xCF8 ([`PciAddress::config_address`]) and reads or writes its data at 0xCFC-0xCFF.
//!
//! The monitor owns these ports and answers them from the sandbox's virtual configuration
//! space, so a sandbox sees its own functions only, and an access to anything else reads
//! all ones and writes nothing. The register offsets and bits, the address encoding and
//! the ID register's decode are pure and live (tested on the host) in `quest_abi::pci`,
//! re-exported here; this module does the port accesses, the bus scan and the
//! capability walk.

use x86_64::instructions::port::Port;

pub use quest_abi::pci::*;
pub use quest_abi::{PciAddress, PciId};

/// The configuration address port (0xCF8).
pub const CONFIG_ADDRESS: u16 = quest_abi::PCI_CONFIG_PORTS.0;
/// The configuration data port (0xCFC; its four bytes are 0xCFC-0xCFF).
pub const CONFIG_DATA: u16 = CONFIG_ADDRESS + 4;

/// Most capabilities [`capability`] follows (a 256-byte space holds at most 48 past the
/// header; a longer chain loops).
const MAX_CAPABILITIES: usize = 48;

/// Writes the raw value `address` to the address port (for probing how the monitor
/// answers malformed addresses; [`read32`] and the others set it themselves).
pub fn set_address(address: u32) {
    // SAFETY: a port write to 0xCF8, which the monitor owns and emulates for this
    // sandbox: it reaches no hardware the sandbox was not given.
    unsafe { Port::<u32>::new(CONFIG_ADDRESS).write(address) }
}

/// The data port's dword, for the address last set.
pub fn data32() -> u32 {
    // SAFETY: a port read of 0xCFC, emulated by the monitor (as in `set_address`).
    unsafe { Port::<u32>::new(CONFIG_DATA).read() }
}

/// The dword at `offset` (rounded down to 4) of function `f`.
pub fn read32(f: PciAddress, offset: u8) -> u32 {
    set_address(f.config_address(offset));
    data32()
}

/// Writes the dword at `offset` (rounded down to 4) of function `f`.
pub fn write32(f: PciAddress, offset: u8, value: u32) {
    set_address(f.config_address(offset));
    // SAFETY: a port write to 0xCFC, emulated by the monitor (as in `set_address`).
    unsafe { Port::<u32>::new(CONFIG_DATA).write(value) }
}

/// The 16 bits at `offset` (rounded down to 2) of function `f`.
pub fn read16(f: PciAddress, offset: u8) -> u16 {
    set_address(f.config_address(offset));
    // SAFETY: a port read of 0xCFC or 0xCFE, emulated by the monitor (as in
    // `set_address`).
    unsafe { Port::<u16>::new(CONFIG_DATA + u16::from(offset & 2)).read() }
}

/// Writes the 16 bits at `offset` (rounded down to 2) of function `f`.
pub fn write16(f: PciAddress, offset: u8, value: u16) {
    set_address(f.config_address(offset));
    // SAFETY: a port write to 0xCFC or 0xCFE, emulated by the monitor (as in
    // `set_address`).
    unsafe { Port::<u16>::new(CONFIG_DATA + u16::from(offset & 2)).write(value) }
}

/// The byte at `offset` of function `f`.
pub fn read8(f: PciAddress, offset: u8) -> u8 {
    set_address(f.config_address(offset));
    // SAFETY: a port read of 0xCFC-0xCFF, emulated by the monitor (as in `set_address`).
    unsafe { Port::<u8>::new(CONFIG_DATA + u16::from(offset & 3)).read() }
}

/// Writes the byte at `offset` of function `f`.
pub fn write8(f: PciAddress, offset: u8, value: u8) {
    set_address(f.config_address(offset));
    // SAFETY: a port write to 0xCFC-0xCFF, emulated by the monitor (as in
    // `set_address`).
    unsafe { Port::<u8>::new(CONFIG_DATA + u16::from(offset & 3)).write(value) }
}

/// Function `f`'s command register.
pub fn command(f: PciAddress) -> u16 {
    read32(f, COMMAND) as u16
}

/// Every function that answers, in bus order. It looks at all eight functions of every
/// device, with or without function 0 and whatever its header says: a sandbox may own
/// function 1 of a device whose function 0 it does not (as Linux does under
/// partitioning hypervisors).
pub fn functions() -> impl Iterator<Item = (PciAddress, PciId)> {
    (0..=255u8).flat_map(|bus| {
        (0..32u8).flat_map(move |device| {
            (0..8u8).filter_map(move |function| {
                let f = PciAddress {
                    bus,
                    device,
                    function,
                };
                Some((f, PciId::from_register(read32(f, ID))?))
            })
        })
    })
}

/// The `index`th function (from 0, in bus order) whose ID is `id`.
pub fn find(id: PciId, index: usize) -> Option<PciAddress> {
    functions()
        .filter(|&(_, found)| found == id)
        .nth(index)
        .map(|(f, _)| f)
}

/// The offset of function `f`'s first capability with ID `id` (such as [`CAP_MSI`]),
/// following its capabilities list (pointers below 0x40, into the header, end it).
pub fn capability(f: PciAddress, id: u8) -> Option<u8> {
    if read32(f, COMMAND) & STATUS_CAPABILITIES == 0 {
        return None;
    }
    let mut at = (read32(f, CAPABILITIES) & 0xfc) as u8;
    for _ in 0..MAX_CAPABILITIES {
        if at < 0x40 {
            return None;
        }
        let head = read32(f, at);
        if head as u8 == id {
            return Some(at);
        }
        at = ((head >> 8) & 0xfc) as u8;
    }
    None
}
