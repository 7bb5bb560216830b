//! PCI configuration mechanism #1 (ports 0xCF8/0xCFC), which the monitor answers from
//! the sandbox's virtual configuration space.

use core::fmt;

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;
/// Command register bits.
pub const MEMORY: u16 = 1 << 1;
/// Bus master enable.
pub const BUS_MASTER: u16 = 1 << 2;
/// INTx disable.
pub const INTX_DISABLE: u16 = 1 << 10;
/// The MSI capability's ID.
const CAP_MSI: u8 = 0x05;

/// A function's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bdf {
    /// Bus.
    pub bus: u8,
    /// Device.
    pub dev: u8,
    /// Function.
    pub func: u8,
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
    }
}

fn address(f: Bdf, offset: u8) -> u32 {
    1 << 31
        | u32::from(f.bus) << 16
        | u32::from(f.dev) << 11
        | u32::from(f.func) << 8
        | u32::from(offset & 0xfc)
}

fn outl(port: u16, value: u32) {
    // SAFETY: a port write; the monitor decides what it does (it owns 0xCF8-0xCFF).
    unsafe { core::arch::asm!("out dx, eax", in("dx") port, in("eax") value, options(nostack)) };
}

fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: as in `outl`.
    unsafe { core::arch::asm!("in eax, dx", in("dx") port, out("eax") value, options(nostack)) };
    value
}

fn outw(port: u16, value: u16) {
    // SAFETY: as in `outl`.
    unsafe { core::arch::asm!("out dx, ax", in("dx") port, in("ax") value, options(nostack)) };
}

/// The dword at `offset` (rounded down to 4).
pub fn read(f: Bdf, offset: u8) -> u32 {
    outl(CONFIG_ADDRESS, address(f, offset));
    inl(CONFIG_DATA)
}

/// Writes the dword at `offset`.
pub fn write(f: Bdf, offset: u8, value: u32) {
    outl(CONFIG_ADDRESS, address(f, offset));
    outl(CONFIG_DATA, value);
}

/// Writes the 16 bits at `offset` (2-aligned).
pub fn write16(f: Bdf, offset: u8, value: u16) {
    outl(CONFIG_ADDRESS, address(f, offset));
    outw(CONFIG_DATA + u16::from(offset & 2), value);
}

/// The command register.
pub fn command(f: Bdf) -> u16 {
    read(f, 0x04) as u16
}

/// Every function this sandbox sees, in bus order (all eight functions of each device).
pub fn functions() -> impl Iterator<Item = (Bdf, u32)> {
    (0..=255u8).flat_map(|bus| {
        (0..32u8).flat_map(move |dev| {
            (0..8u8).filter_map(move |func| {
                let f = Bdf { bus, dev, func };
                let id = read(f, 0);
                (id & 0xffff != 0xffff).then_some((f, id))
            })
        })
    })
}

/// The offset of `f`'s MSI capability.
pub fn msi(f: Bdf) -> Option<u8> {
    if read(f, 0x04) & (1 << 20) == 0 {
        return None;
    }
    let mut at = (read(f, 0x34) & 0xfc) as u8;
    for _ in 0..48 {
        if at < 0x40 {
            return None;
        }
        let head = read(f, at);
        if head as u8 == CAP_MSI {
            return Some(at);
        }
        at = ((head >> 8) & 0xfc) as u8;
    }
    None
}
