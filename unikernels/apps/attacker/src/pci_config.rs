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
use quest_rt::pci::{self, PciAddress, PciId};
use quest_rt::println;

/// Every function visible on any bus: (count, whether `id` was among them).
fn scan(id: PciId) -> (u32, bool) {
    pci::functions().fold((0, false), |(found, target), (_, seen)| {
        (found + 1, target || seen == id)
    })
}

/// The writes: (offset, value) for every function slot of bus 0.
const WRITES: [(u8, u32); 4] = [
    (pci::COMMAND, 0x0000_0007),   // I/O, memory, bus master
    (pci::BAR0, 0x0000_1001),      // BAR0 (an I/O BAR) to port 0x1000
    (pci::BAR0 + 4, 0xfe00_0000),  // BAR1 (a memory BAR) elsewhere
    (pci::INTERRUPT, 0x0000_0105), // Interrupt Line 5, pin A
];

/// Runs the check; `Err(what got through)` if any of it reached a function.
pub fn run(value: Option<&str>) -> Result<(), String> {
    let (vendor, device) = match value {
        None => (0x10ec, 0x8139),
        Some(v) => {
            let (vd, dd) = v.split_once(':').ok_or("pci-config:VVVV:DDDD")?;
            let hex = |s: &str| u16::from_str_radix(s, 16).map_err(|_| "pci-config:VVVV:DDDD");
            (hex(vd)?, hex(dd)?)
        }
    };
    let (before, seen) = scan(PciId { vendor, device });
    if before != 0 || seen {
        return Err(format!(
            "{before} PCI functions visible before writing (the target {})",
            if seen { "among them" } else { "not" }
        ));
    }
    let mut writes = 0u32;
    for dev in 0..32u8 {
        for function in 0..8u8 {
            let f = PciAddress {
                bus: 0,
                device: dev,
                function,
            };
            for (offset, value) in WRITES {
                pci::write32(f, offset, value);
                writes += 1;
                let back = pci::read32(f, offset);
                if back != u32::MAX {
                    return Err(format!(
                        "{f} offset {offset:#x} reads {back:#x} after writing {value:#x}"
                    ));
                }
            }
        }
    }
    let (after, seen) = scan(PciId { vendor, device });
    if after != 0 || seen {
        return Err(format!("{after} PCI functions visible after writing"));
    }
    println!(
        "attacker: pci-config: {vendor:04x}:{device:04x} not visible, {writes} config writes on bus 0 read back all ones, 0 functions visible after"
    );
    Ok(())
}
