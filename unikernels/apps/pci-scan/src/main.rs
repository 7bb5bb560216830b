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

use quest_rt::{println, Ctx};

quest_rt::entry!(main);

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;
/// The command register's bus-master enable bit.
const BUS_MASTER: u16 = 1 << 2;

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

fn inw(port: u16) -> u16 {
    let value: u16;
    // SAFETY: as in `outl`.
    unsafe { core::arch::asm!("in ax, dx", in("dx") port, out("ax") value, options(nostack)) };
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

/// Sizes BAR `i` (offset 0x10 + 4i) and prints it; returns how many BARs it used (a
/// 64-bit memory BAR takes two).
fn size_bar(bus: u8, dev: u8, func: u8, i: u8) -> u8 {
    let offset = 0x10 + 4 * i;
    let original = read(bus, dev, func, offset);
    write(bus, dev, func, offset, u32::MAX);
    let mask = read(bus, dev, func, offset);
    write(bus, dev, func, offset, original);
    let restored = read(bus, dev, func, offset);
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
        "bar {bus:02x}:{dev:02x}.{func} #{i}: {} size {size:#x} (value {original:#x}, restored {})",
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
            u64::from(read(bus, dev, func, offset + 4)) << 32
        } else {
            0
        };
        let base = high | u64::from(original & !0xf);
        match quest_rt::paging::map_device(base) {
            Ok(p) => {
                // SAFETY: a device register the monitor mapped into this sandbox (or, if
                // it did not, an EPT/NPT violation the monitor reports); volatile.
                let value = unsafe { p.read_volatile() };
                println!("bar {bus:02x}:{dev:02x}.{func} #{i}: reads {value:#010x}");
            }
            Err(e) => println!("bar {bus:02x}:{dev:02x}.{func} #{i}: cannot map: {e}"),
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
    for bus in 0..=255u8 {
        for dev in 0..32u8 {
            for func in 0..8u8 {
                let id = read(bus, dev, func, 0);
                if id & 0xffff == 0xffff {
                    // Every function is looked at, even without function 0: a sandbox
                    // may own function 1 of a device whose function 0 it does not (as
                    // Linux does under partitioning hypervisors).
                    continue;
                }
                found += 1;
                let class = read(bus, dev, func, 8) >> 8;
                let header = (read(bus, dev, func, 0x0c) >> 16) as u8;
                println!(
                    "function {bus:02x}:{dev:02x}.{func} id {:04x}:{:04x} class {class:06x} header {header:#04x}",
                    id & 0xffff,
                    id >> 16
                );
                if header & 0x7f == 0 {
                    let mut i = 0;
                    while i < 6 {
                        i += size_bar(bus, dev, func, i);
                    }
                }
                // Bus mastering: set it with a 16-bit write of the command register,
                // then read it back.
                outl(CONFIG_ADDRESS, address(bus, dev, func, 4));
                let command = inw(CONFIG_DATA);
                outw(CONFIG_DATA, command | BUS_MASTER);
                let after = inw(CONFIG_DATA);
                println!(
                    "bus master {bus:02x}:{dev:02x}.{func}: {}",
                    if after & BUS_MASTER != 0 {
                        "enabled"
                    } else {
                        "refused"
                    }
                );
                if func == 0 && header & 0x80 == 0 {
                    break; // single-function device
                }
            }
        }
    }
    // A hostile access: the address register with its enable bit clear reads as all ones.
    outl(CONFIG_ADDRESS, address(0, 0, 0, 0) & !(1 << 31));
    println!("disabled read {:#x}", inl(CONFIG_DATA));
    println!("pci-scan: {found} functions");
    0
}
