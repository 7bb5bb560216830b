//! The BARs of each sandbox's PCI functions: checked once at boot (`crate::pci::init`
//! asks [`give`] before it gives a function) against the sandbox's guest-physical layout,
//! host RAM, the other functions' BARs and the ports no sandbox may have
//! (`quest_monitor_core::device_windows`; bridges are never given), then kept per sandbox for the builders of its
//! EPT/NPT (memory windows, uncached) and I/O bitmap/IOPM (I/O windows).

use crate::bootinfo::BootInfo;
use quest_abi::{DeviceKind, SandboxId, TableView, MAX_SANDBOXES};
use quest_monitor_core::device_windows::{
    bar_ranges, check, endpoint, BarSpace, DeviceWindows, Keepout, MAX_MEMORY_WINDOWS,
};
use quest_monitor_core::pci::{ConfigSpace, Function, Functions, BAR0, MAX_FUNCTIONS};
use quest_monitor_core::placement::Range;
use spin::Mutex;

/// Each sandbox's windows (set at boot before any vCPU runs, read by its builders).
static WINDOWS: [Mutex<DeviceWindows>; MAX_SANDBOXES] =
    [const { Mutex::new(DeviceWindows::new()) }; MAX_SANDBOXES];

/// Most usable areas of the firmware map the host-RAM check looks at.
const MAX_HOST_RAM: usize = 32;

/// Host RAM (the firmware's usable areas) for the BAR checks.
#[derive(Clone, Copy, Debug)]
pub struct HostRam {
    areas: [Range; MAX_HOST_RAM],
    count: usize,
}

impl HostRam {
    /// The usable areas of `info`'s memory map.
    pub fn of(info: &BootInfo) -> Self {
        let mut out = Self {
            areas: [Range { start: 0, end: 0 }; MAX_HOST_RAM],
            count: 0,
        };
        for a in info.areas().iter().filter(|a| a.usable) {
            if let Some(slot) = out.areas.get_mut(out.count) {
                *slot = a.range;
                out.count += 1;
            }
        }
        out
    }
}

/// The six BAR registers of `f` as they read now.
fn registers(cs: &mut impl ConfigSpace, f: &Function) -> [u32; 6] {
    core::array::from_fn(|i| cs.read(f.address, BAR0 + 4 * i as u8))
}

/// Checks every BAR of `f` for sandbox `s` (`monitor_mmio`: MMIO only the monitor may
/// reach besides the interrupt controllers, the ECAM window) and, when all pass, records its windows;
/// otherwise prints why and records nothing. Returns whether
/// `f` may be given. Boot core, before any sandbox runs.
pub fn give(
    cs: &mut impl ConfigSpace,
    table: &TableView<'static>,
    s: SandboxId,
    f: &Function,
    functions: &Functions,
    host_ram: &HostRam,
    monitor_mmio: &[Range],
) -> bool {
    let Some(sandbox) = table.sandbox(s) else {
        return false;
    };
    let name = sandbox.name();
    if let Err(why) = endpoint(f) {
        crate::println!(
            "quest: device {} not given to sandbox '{name}': {why}",
            f.address
        );
        return false;
    }
    let mut foreign = [(0u16, 0u16); 64];
    let mut foreign_count = 0;
    for other in table.sandboxes().filter(|o| o.id() != s) {
        for d in other.devices().filter(|d| d.kind() == DeviceKind::IoPorts) {
            if let Some(slot) = foreign.get_mut(foreign_count) {
                let ports = d.ports();
                *slot = (*ports.start(), *ports.end());
                foreign_count += 1;
            }
        }
    }
    let keepout = Keepout {
        ram_size: sandbox.ram_size(),
        host_ram: &host_ram.areas[..host_ram.count],
        monitor_mmio,
        console_port: table.console_port(),
        foreign_ports: &foreign[..foreign_count],
    };
    let mut regs = [[0u32; 6]; MAX_FUNCTIONS];
    for (r, g) in regs.iter_mut().zip(functions.iter()) {
        *r = registers(cs, g);
    }
    let others = || {
        functions
            .iter()
            .zip(regs)
            .flat_map(|(g, r)| bar_ranges(g, r).map(move |b| (g.address, b)))
    };
    let mut windows = [(BarSpace::Memory, (0, 0)); 6];
    let mut count = 0;
    for b in bar_ranges(f, registers(cs, f)) {
        if b.base == 0 {
            crate::println!(
                "quest: device {} BAR{} is not assigned by firmware: not mapped, its decode stays off",
                f.address,
                b.bar
            );
            continue;
        }
        match check(f.address, &b, &keepout, others()) {
            Ok(window) => {
                windows[count] = (b.space, window);
                count += 1;
            }
            Err(why) => {
                crate::println!(
                    "quest: device {} not given to sandbox '{name}': BAR{} at {:#x}+{:#x}: {why}",
                    f.address,
                    b.bar,
                    b.base,
                    b.size
                );
                return false;
            }
        }
    }
    if !WINDOWS[s.index() % MAX_SANDBOXES]
        .lock()
        .add(&windows[..count])
    {
        crate::println!(
            "quest: device {} not given to sandbox '{name}': more than {MAX_MEMORY_WINDOWS} BAR windows",
            f.address
        );
        return false;
    }
    true
}

/// Prints one line per mapped BAR of `f`, given to sandbox `name` by [`give`].
pub fn print(cs: &mut impl ConfigSpace, f: &Function, name: &str) {
    for b in bar_ranges(f, registers(cs, f)).filter(|b| b.base != 0) {
        match b.space {
            BarSpace::Memory => crate::println!(
                "quest: device {} BAR{} {:#x}+{:#x} -> sandbox '{name}' (uncached)",
                f.address,
                b.bar,
                b.base,
                b.size
            ),
            BarSpace::Io => crate::println!(
                "quest: device {} BAR{} ports {:#x}-{:#x} -> sandbox '{name}'",
                f.address,
                b.bar,
                b.base,
                b.base + b.size - 1
            ),
        }
    }
}

/// Sandbox `s`'s windows.
pub fn windows(s: SandboxId) -> DeviceWindows {
    *WINDOWS[s.index() % MAX_SANDBOXES].lock()
}
