//! `pci-config[:VVVV:DDDD]`: tries to take over another sandbox's PCI function through
//! configuration mechanism #1 (ports 0xCF8/0xCFC), the ports every sandbox may use (the
//! monitor answers them from the sandbox's own virtual configuration space).
//!
//! It scans every bus, device and function for any function at all and for the one with
//! the given ID (default the RTL8139, 10ec:8139), then writes every function slot of bus
//! 0: the command register (I/O, memory and bus-master enable), BAR0 and BAR1 (moved to
//! 0x1000 and 0xfe000000: a driver's traffic would go elsewhere) and the Interrupt Line,
//! and reads each back. Contained means: no function visible before or after, and every
//! read all ones. The owner's network keeps working (what `boot_web` checks afterwards).

use alloc::format;
use alloc::string::String;
use quest_rt::println;

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

fn outl(port: u16, value: u32) {
    // SAFETY: a port write to 0xCF8/0xCFC, which the monitor owns and emulates.
    unsafe { core::arch::asm!("out dx, eax", in("dx") port, in("eax") value, options(nostack)) };
}

fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: as in `outl`.
    unsafe { core::arch::asm!("in eax, dx", in("dx") port, out("eax") value, options(nostack)) };
    value
}

fn address(bus: u8, dev: u8, func: u8, offset: u8) -> u32 {
    1 << 31
        | u32::from(bus) << 16
        | u32::from(dev) << 11
        | u32::from(func) << 8
        | u32::from(offset & 0xfc)
}

fn read(bus: u8, dev: u8, func: u8, offset: u8) -> u32 {
    outl(CONFIG_ADDRESS, address(bus, dev, func, offset));
    inl(CONFIG_DATA)
}

fn write(bus: u8, dev: u8, func: u8, offset: u8, value: u32) {
    outl(CONFIG_ADDRESS, address(bus, dev, func, offset));
    outl(CONFIG_DATA, value);
}

/// Every function visible on any bus: (count, whether `id` was among them).
fn scan(id: u32) -> (u32, bool) {
    let mut found = 0;
    let mut target = false;
    for bus in 0..=255u8 {
        for dev in 0..32u8 {
            for func in 0..8u8 {
                let v = read(bus, dev, func, 0);
                if v & 0xffff != 0xffff {
                    found += 1;
                    target |= v == id;
                }
            }
        }
    }
    (found, target)
}

/// The writes: (offset, value) for every function slot of bus 0.
const WRITES: [(u8, u32); 4] = [
    (0x04, 0x0000_0007), // command: I/O, memory, bus master
    (0x10, 0x0000_1001), // BAR0 (an I/O BAR) to port 0x1000
    (0x14, 0xfe00_0000), // BAR1 (a memory BAR) elsewhere
    (0x3c, 0x0000_0105), // Interrupt Line 5, pin A
];

/// Runs the check; `Err(what got through)` if any of it reached a function.
pub fn run(value: Option<&str>) -> Result<(), String> {
    let (vendor, device) = match value {
        None => (0x10ec, 0x8139),
        Some(v) => {
            let (vd, dd) = v.split_once(':').ok_or("pci-config:VVVV:DDDD")?;
            let hex = |s: &str| u32::from_str_radix(s, 16).map_err(|_| "pci-config:VVVV:DDDD");
            (hex(vd)?, hex(dd)?)
        }
    };
    let id = device << 16 | vendor;
    let (before, seen) = scan(id);
    if before != 0 || seen {
        return Err(format!(
            "{before} PCI functions visible before writing (the target {})",
            if seen { "among them" } else { "not" }
        ));
    }
    let mut writes = 0u32;
    for dev in 0..32u8 {
        for func in 0..8u8 {
            for (offset, value) in WRITES {
                write(0, dev, func, offset, value);
                writes += 1;
                let back = read(0, dev, func, offset);
                if back != u32::MAX {
                    return Err(format!(
                        "00:{dev:02x}.{func} offset {offset:#x} reads {back:#x} after writing {value:#x}"
                    ));
                }
            }
        }
    }
    let (after, seen) = scan(id);
    if after != 0 || seen {
        return Err(format!("{after} PCI functions visible after writing"));
    }
    println!(
        "attacker: pci-config: {vendor:04x}:{device:04x} not visible, {writes} config writes on bus 0 read back all ones, 0 functions visible after"
    );
    Ok(())
}
