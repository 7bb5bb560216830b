//! Scans the whole PCI bus through configuration mechanism #1 (ports 0xCF8/0xCFC), as a
//! driver would, and prints what it finds: one line per function (address, IDs, class,
//! header type), then, for each function, the size of every BAR found by sizing it
//! (write all ones, read the mask back, restore) and whether a bus-master enable stuck.
//! The monitor serves these ports from the sandbox's virtual configuration space, so a
//! sandbox sees its own functions only. A memory BAR's first register is read through
//! the mapping the monitor gives (uncached, where firmware put the BAR). Ends with
//! `pci-scan: N functions`. It looks at all eight functions of every device, since its
//! function 0 may be another's.
#![no_std]
#![no_main]

use quest_rt::pci::{self, PciAddress};
use quest_rt::{println, Ctx};

quest_rt::entry!(main);

/// Sizes BAR `i` (offset 0x10 + 4i) and prints it; returns how many BARs it used (a
/// 64-bit memory BAR takes two).
fn size_bar(f: PciAddress, i: u8) -> u8 {
    let offset = pci::BAR0 + 4 * i;
    let original = pci::read32(f, offset);
    pci::write32(f, offset, u32::MAX);
    let mask = pci::read32(f, offset);
    pci::write32(f, offset, original);
    let restored = pci::read32(f, offset);
    if mask == 0 {
        return 1;
    }
    let io = mask & 1 == 1;
    let wide = !io && (mask >> 1) & 3 == 2;
    let size = if io {
        (!(mask & !3)).wrapping_add(1) & 0xffff
    } else {
        (!(mask & !0xf)).wrapping_add(1)
    };
    println!(
        "bar {f} #{i}: {} size {size:#x} (value {original:#x}, restored {})",
        if io {
            "io"
        } else if wide {
            "mem64"
        } else {
            "mem32"
        },
        if restored == original { "yes" } else { "no" }
    );
    if !io && original & !0xf != 0 {
        // The monitor maps the BAR where firmware put it (guest-physical ==
        // host-physical): its first register must read through.
        let high = if wide {
            u64::from(pci::read32(f, offset + 4)) << 32
        } else {
            0
        };
        let base = high | u64::from(original & !0xf);
        match quest_rt::paging::map_device(base) {
            Ok(p) => {
                // SAFETY: a device register the monitor mapped into this sandbox (or, if
                // it did not, an EPT/NPT violation the monitor reports); volatile.
                let value = unsafe { p.read_volatile() };
                println!("bar {f} #{i}: reads {value:#010x}");
            }
            Err(e) => println!("bar {f} #{i}: cannot map: {e}"),
        }
    }
    if wide {
        2
    } else {
        1
    }
}

fn main(ctx: &Ctx) -> i32 {
    if ctx.vcpu() != 0 {
        return 0;
    }
    let mut found = 0u32;
    // A device whose function 0 says it has no other functions: the rest of its slots
    // are not looked at (some devices answer the same in every slot).
    let mut single_function = None;
    for (f, id) in pci::functions() {
        if single_function == Some((f.bus, f.device)) {
            continue;
        }
        found += 1;
        let class = pci::read32(f, pci::CLASS) >> 8;
        let header = (pci::read32(f, pci::HEADER) >> 16) as u8;
        println!("function {f} id {id} class {class:06x} header {header:#04x}");
        if header & 0x7f == 0 {
            let mut i = 0;
            while i < 6 {
                i += size_bar(f, i);
            }
        }
        // Bus mastering: set it with a 16-bit write of the command register, then read
        // it back.
        let command = pci::read16(f, pci::COMMAND);
        pci::write16(f, pci::COMMAND, command | pci::COMMAND_BUS_MASTER);
        let after = pci::read16(f, pci::COMMAND);
        println!(
            "bus master {f}: {}",
            if after & pci::COMMAND_BUS_MASTER != 0 {
                "enabled"
            } else {
                "refused"
            }
        );
        if f.function == 0 && header & pci::MULTI_FUNCTION == 0 {
            single_function = Some((f.bus, f.device));
        }
    }
    // A hostile access: the address register with its enable bit clear reads as all ones.
    let first = PciAddress {
        bus: 0,
        device: 0,
        function: 0,
    };
    pci::set_address(first.config_address(0) & !(1 << 31));
    println!("disabled read {:#x}", pci::data32());
    println!("pci-scan: {found} functions");
    0
}
