//! PCI configuration space through configuration mechanism #1 (PCI Local Bus
//! Specification 3.0, 3.2.2.3.2): a driver writes a function's register address to port
//! 0xCF8 ([`PciAddress::config_address`]) and reads or writes its data at 0xCFC-0xCFF.
//!
//! The monitor owns these ports and answers them from the sandbox's virtual configuration
//! space, so a sandbox sees its own functions only, and an access to anything else reads
//! all ones and writes nothing. The address encoding and the ID register's decode are
//! pure and live (tested on the host) in `quest_abi` next to [`PciAddress`] and
//! [`PciId`]; this module does the port accesses, the bus scan and a few registers.
//!
//! Register offsets and bits: the same specification, 6.1 (the type 0 header) and 6.7
//! (capabilities).

use x86_64::instructions::port::Port;

pub use quest_abi::{PciAddress, PciId};

/// The configuration address port.
pub const CONFIG_ADDRESS: u16 = 0xcf8;
/// The configuration data port (its four bytes are 0xCFC-0xCFF).
pub const CONFIG_DATA: u16 = 0xcfc;

/// Vendor ID (16 bits) and device ID (16 bits).
pub const ID: u8 = 0x00;
/// Command (16 bits) and status (16 bits).
pub const COMMAND: u8 = 0x04;
/// Revision (8 bits) and class code (24 bits).
pub const CLASS: u8 = 0x08;
/// Cache line size, latency timer, header type (bits 23:16), BIST.
pub const HEADER: u8 = 0x0c;
/// The first base address register; type 0 headers have six, 4 bytes apart.
pub const BAR0: u8 = 0x10;
/// Capabilities pointer (8 bits).
pub const CAPABILITIES: u8 = 0x34;
/// Interrupt Line (8 bits) and Interrupt Pin (8 bits, 1 = INTA).
pub const INTERRUPT: u8 = 0x3c;

/// Command: I/O space decode.
pub const COMMAND_IO: u16 = 1 << 0;
/// Command: memory space decode.
pub const COMMAND_MEMORY: u16 = 1 << 1;
/// Command: bus master (the function may start DMA).
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command: INTx emulation disable.
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status (bits 31:16 of the [`COMMAND`] dword): a capabilities list is present.
pub const STATUS_CAPABILITIES: u32 = 1 << 20;
/// Header type bit 7: a multi-function device.
pub const MULTI_FUNCTION: u8 = 0x80;
/// The MSI capability's ID.
pub const CAP_MSI: u8 = 0x05;

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
