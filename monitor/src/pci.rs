//! PCI at boot and the sandboxes' configuration accesses: the real configuration space
//! (ECAM from the ACPI MCFG table when it has segment 0, else mechanism #1 through ports
//! 0xCF8/0xCFC), the scan and the table's assignments (`quest_monitor_core::pci`), and one
//! virtual configuration space per sandbox (`quest_monitor_core::pci_virtual`) that its
//! vCPUs' 0xCF8/0xCFC exits reach through `VcpuOps`, on VT-x and SVM alike.
//!
//! The real address/data pair is one per machine (not per core), so every real access
//! holds [`REAL`]'s lock for its address-then-data pair.

use crate::bootinfo::AcpiRoot;
use crate::cores::IdentityMapped;
use crate::device_bars::HostRam;
use acpi::mcfg::Mcfg;
use acpi::AcpiTables;
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicBool, Ordering};
use quest_abi::{PciAddress, SandboxId, TableView, MAX_SANDBOXES};
use quest_monitor_core::pci::{self, Assignment, ConfigSpace, Functions};
use quest_monitor_core::pci_virtual::{Refusal, VirtualConfig};
use quest_monitor_core::placement::Range;
use spin::Mutex;
use x86_64::instructions::port::Port;

/// Most PCI devices the table may name (the rest are reported absent).
const MAX_DEVICES: usize = 64;

/// How the monitor reaches real configuration space.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Access {
    /// Mechanism #1: address at 0xCF8, data at 0xCFC.
    Ports,
    /// Memory-mapped (ECAM) at `base` for buses `first..=last` of segment 0.
    Ecam { base: u64, first: u8, last: u8 },
}

impl Access {
    /// The address of function `f`'s register `offset` (ECAM), if in range.
    fn ecam(base: u64, first: u8, last: u8, f: PciAddress, offset: u8) -> Option<u64> {
        pci::ecam_address(base, first, last, f, offset)
    }

    /// The ECAM window, which no sandbox's BAR may be mapped over.
    fn window(&self) -> Option<Range> {
        match *self {
            Access::Ports => None,
            Access::Ecam { base, first, last } => {
                let (start, end) = pci::ecam_window(base, first, last);
                Some(Range { start, end })
            }
        }
    }
}

impl ConfigSpace for Access {
    fn read(&mut self, f: PciAddress, offset: u8) -> u32 {
        match *self {
            Access::Ports => {
                // SAFETY: mechanism #1 ports, used by the monitor only (never passed
                // through), under REAL's lock.
                unsafe {
                    Port::<u32>::new(0xcf8).write(f.config_address(offset));
                    Port::<u32>::new(0xcfc).read()
                }
            }
            Access::Ecam { base, first, last } => match Self::ecam(base, first, last, f, offset) {
                // SAFETY: an aligned dword of the MCFG's ECAM window, identity mapped
                // (below 4 GiB on every firmware Quest boots on).
                Some(a) => unsafe { core::ptr::read_volatile(a as *const u32) },
                None => u32::MAX,
            },
        }
    }

    fn write(&mut self, f: PciAddress, offset: u8, value: u32) {
        match *self {
            Access::Ports => {
                // SAFETY: as in `read`.
                unsafe {
                    Port::<u32>::new(0xcf8).write(f.config_address(offset));
                    Port::<u32>::new(0xcfc).write(value);
                }
            }
            Access::Ecam { base, first, last } => {
                if let Some(a) = Self::ecam(base, first, last, f, offset) {
                    // SAFETY: as in `read`.
                    unsafe { core::ptr::write_volatile(a as *mut u32, value) }
                }
            }
        }
    }
}

/// The real configuration space (set once at boot, before any sandbox runs).
static REAL: Mutex<Access> = Mutex::new(Access::Ports);

/// Each sandbox's virtual configuration space (filled at the start of [`init`]).
static SPACES: Spaces = Spaces::new();

/// Storage for [`SPACES`] that stays in `.bss`: an empty `VirtualConfig` is not all zero
/// bytes (its `Option`s use niches), so a plain static of them is `.data`, about 120 KiB
/// of the loaded monitor image. The boot core fills it once, before anything reads it;
/// then it is only read, each space behind its own lock.
struct Spaces {
    ready: AtomicBool,
    slots: UnsafeCell<MaybeUninit<[Mutex<VirtualConfig>; MAX_SANDBOXES]>>,
}

// SAFETY: `slots` is written only by `fill`, once, on the boot core before `ready` is
// set and before any other core runs; afterwards it is only shared (`Deref`), and each
// `VirtualConfig` is behind its `Mutex`.
unsafe impl Sync for Spaces {}

impl Spaces {
    const fn new() -> Self {
        Self {
            ready: AtomicBool::new(false),
            slots: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Fills every slot with an empty space. Boot core, once, before any access.
    fn fill(&self) {
        if self.ready.load(Ordering::Acquire) {
            return;
        }
        let first = self.slots.get().cast::<Mutex<VirtualConfig>>();
        for i in 0..MAX_SANDBOXES {
            // SAFETY: slot `i` of the array, not yet initialised and not referenced (the
            // boot core, before `ready`); written in place, one at a time.
            unsafe { first.add(i).write(Mutex::new(VirtualConfig::new())) };
        }
        self.ready.store(true, Ordering::Release);
    }
}

impl core::ops::Deref for Spaces {
    type Target = [Mutex<VirtualConfig>; MAX_SANDBOXES];

    fn deref(&self) -> &Self::Target {
        assert!(
            self.ready.load(Ordering::Acquire),
            "PCI spaces used before pci::init"
        );
        // SAFETY: `fill` initialised every slot before setting `ready`.
        unsafe { (*self.slots.get()).assume_init_ref() }
    }
}

/// Functions whose manifest entry says `dma = "unprotected"` (`crate::iommu` decides).
static UNPROTECTED: Mutex<[Option<PciAddress>; MAX_DEVICES]> = Mutex::new([None; MAX_DEVICES]);

/// Whether each sandbox may start (none of its required functions is missing).
static STARTABLE: [AtomicBool; MAX_SANDBOXES] = [const { AtomicBool::new(true) }; MAX_SANDBOXES];

/// The ECAM window of segment 0 from the ACPI MCFG table, if there is one.
fn ecam(root: Option<AcpiRoot>) -> Option<Access> {
    let root = root?;
    // SAFETY: the root comes from GRUB's copy of the firmware RSDP; the crate checks
    // signatures and checksums; the tables are identity mapped.
    let tables =
        unsafe { AcpiTables::from_rsdt(IdentityMapped, root.revision, root.address as usize) }
            .ok()?;
    let mcfg = tables.find_table::<Mcfg>().ok()?;
    let entry = mcfg
        .get()
        .entries()
        .iter()
        .copied()
        .find(|e| e.pci_segment_group == 0)?;
    Some(Access::Ecam {
        base: entry.base_address,
        first: entry.bus_number_start,
        last: entry.bus_number_end,
    })
}

/// Scans PCI, matches the table's PCI devices and prints one line per device (assigned,
/// absent, taken) and per sandbox that is not started for want of one. Boot core, before
/// any sandbox runs.
pub fn init(table: &TableView<'static>, acpi: Option<AcpiRoot>, host_ram: &HostRam) {
    let pci_devices = table.sandboxes().flat_map(|s| {
        s.devices()
            .filter_map(move |d| Some((s.id().index(), d.pci()?, d)))
    });
    SPACES.fill();
    if pci_devices.clone().next().is_none() {
        return; // the machine's PCI is none of this table's business
    }
    let access = ecam(acpi).unwrap_or(Access::Ports);
    let (first, last, how) = match access {
        Access::Ports => (0, 255, "ports 0xcf8/0xcfc"),
        Access::Ecam { first, last, .. } => (first, last, "ECAM (ACPI MCFG)"),
    };
    let functions: Functions = pci::enumerate(&mut *REAL.lock(), first, last);
    *REAL.lock() = access;
    crate::println!(
        "quest: PCI through {how}: {} functions on buses {first}-{last}",
        functions.iter().count()
    );
    let mut out = [None; MAX_DEVICES];
    pci::assign(
        &functions,
        pci_devices.clone().map(|(s, select, _)| (s, select)),
        &mut out,
    );
    let start_without: [bool; MAX_DEVICES] = {
        let mut a = [false; MAX_DEVICES];
        for (i, (_, _, d)) in pci_devices.clone().take(MAX_DEVICES).enumerate() {
            a[i] = d.start_without();
        }
        a
    };
    for (i, (s, select, d)) in pci_devices.enumerate() {
        let name = name_of(table, s);
        // A function whose BARs cannot be mapped safely is not given (it prints why).
        if let Some(Some((_, Assignment::Found(f)))) = out.get(i) {
            let id = u32::try_from(s).map(SandboxId::new);
            let reserved = access.window();
            let given = id.is_ok_and(|id| {
                crate::device_bars::give(
                    &mut *REAL.lock(),
                    table,
                    id,
                    f,
                    &functions,
                    host_ram,
                    reserved.as_slice(),
                )
            });
            if !given {
                out[i] = Some((s, Assignment::Refused));
            }
        }
        let absent = if d.start_without() {
            "it starts without it"
        } else {
            "it is not started"
        };
        match out.get(i).copied().flatten().map(|(_, a)| a) {
            Some(Assignment::Found(f)) => {
                crate::println!("quest: device {} ({}) -> sandbox '{name}'", f.address, f.id);
                crate::device_bars::print(&mut *REAL.lock(), &f, name);
                if !SPACES[s % MAX_SANDBOXES].lock().add(f) {
                    crate::println!(
                        "quest: sandbox '{name}' has too many PCI functions; {} not given",
                        f.address
                    );
                }
                if d.dma_unprotected() {
                    mark_unprotected(f.address);
                }
            }
            Some(Assignment::Taken { address, owner }) => {
                let other = name_of(table, owner);
                crate::println!("quest: device {select} for sandbox '{name}' is {address}, already sandbox '{other}''s; {absent}");
            }
            Some(Assignment::Refused) => {
                crate::println!(
                    "quest: device {select} for sandbox '{name}' is not given; {absent}"
                )
            }
            _ => crate::println!("quest: device {select} for sandbox '{name}' is absent; {absent}"),
        }
    }
    for s in table.sandboxes() {
        let i = s.id().index();
        if !pci::may_start(i, &out, |d| start_without.get(d).copied().unwrap_or(false)) {
            STARTABLE[i % MAX_SANDBOXES].store(false, Ordering::Release);
            crate::println!(
                "quest: sandbox '{}' is not started: a device it needs is missing",
                s.name()
            );
        }
    }
}

/// The name of sandbox index `s`.
fn name_of(table: &TableView<'static>, s: usize) -> &'static str {
    u32::try_from(s)
        .ok()
        .and_then(|s| table.sandbox(SandboxId::new(s)))
        .map_or("?", |v| v.name())
}

/// Whether sandbox `s` may start (see [`init`]).
pub fn may_start(s: SandboxId) -> bool {
    STARTABLE[s.index() % MAX_SANDBOXES].load(Ordering::Acquire)
}

/// A read of sandbox `s`'s virtual configuration space.
pub fn read(s: SandboxId, f: PciAddress, offset: u8, size: u8) -> u32 {
    let mut space = SPACES[s.index() % MAX_SANDBOXES].lock();
    space.read(&mut *REAL.lock(), f, offset, size)
}

/// A write to sandbox `s`'s virtual configuration space; what it refused.
pub fn write(s: SandboxId, f: PciAddress, offset: u8, size: u8, value: u32) -> Option<Refusal> {
    let mut space = SPACES[s.index() % MAX_SANDBOXES].lock();
    space.write(&mut *REAL.lock(), f, offset, size, value)
}

/// Notes that the manifest accepts unprotected DMA for function `f`.
fn mark_unprotected(f: PciAddress) {
    if let Some(slot) = UNPROTECTED.lock().iter_mut().find(|s| s.is_none()) {
        *slot = Some(f);
    }
}

/// Calls `each(sandbox, function, unprotected_ok)` for every function given to a sandbox
/// (`unprotected_ok`: its entry says `dma = "unprotected"`). After [`init`].
pub fn assigned(mut each: impl FnMut(SandboxId, PciAddress, bool)) {
    let unprotected = *UNPROTECTED.lock();
    // Collected first: `each` may take these locks itself.
    let mut all = [None; MAX_DEVICES];
    let mut n = 0;
    for (i, space) in SPACES.iter().enumerate() {
        for f in space.lock().functions() {
            if let Some(slot) = all.get_mut(n) {
                *slot = Some((SandboxId::new(i as u32), f.address));
                n += 1;
            }
        }
    }
    for (s, f) in all.into_iter().flatten() {
        each(s, f, unprotected.contains(&Some(f)));
    }
}

/// Lets sandbox `s` turn bus mastering of its function `f` on (`crate::iommu` decided
/// its DMA is safe, or accepted as unprotected); false if `s` does not own `f`. Turns
/// bus mastering off in the real device otherwise (it may be on from the firmware).
pub fn set_dma(s: SandboxId, f: PciAddress, allowed: bool) -> bool {
    if allowed {
        return SPACES[s.index() % MAX_SANDBOXES].lock().allow_dma(f);
    }
    stop_bus_master(f);
    false
}

/// Turns bus mastering of function `f` off in the real device (a DMA fault, or a
/// function whose DMA is not allowed).
pub fn stop_bus_master(f: PciAddress) {
    let mut real = REAL.lock();
    let command = real.read(f, pci::COMMAND);
    if command & u32::from(pci::COMMAND_BUS_MASTER) != 0 {
        // The status half written as 0 changes nothing (its bits are write-1-to-clear).
        real.write(
            f,
            pci::COMMAND,
            command & 0xffff & !u32::from(pci::COMMAND_BUS_MASTER),
        );
    }
}

/// Dword register `offset` of function `f`'s real configuration space, for the
/// monitor's own use (an IOMMU's own function, a protected function's command register);
/// never what a sandbox asks.
pub fn real_read(f: PciAddress, offset: u8) -> u32 {
    REAL.lock().read(f, offset)
}

/// Writes dword register `offset` of function `f`'s real configuration space (see
/// [`real_read`]).
pub fn real_write(f: PciAddress, offset: u8, value: u32) {
    REAL.lock().write(f, offset, value);
}

/// The secondary and subordinate bus of function `f` if it is a PCI-PCI bridge (header
/// type 1), for DMAR device scopes behind bridges.
pub fn bridge_buses(f: PciAddress) -> Option<quest_monitor_core::vtd::dmar::BridgeBuses> {
    let mut real = REAL.lock();
    let header = (real.read(f, pci::HEADER) >> 16) as u8;
    if real.read(f, pci::ID) & 0xffff == 0xffff || header & 0x7f != 1 {
        return None;
    }
    let buses = real.read(f, 0x18);
    Some(quest_monitor_core::vtd::dmar::BridgeBuses {
        secondary: (buses >> 8) as u8,
        subordinate: (buses >> 16) as u8,
    })
}

/// Runs `f` on sandbox `s`'s virtual configuration space and the real one (the
/// interrupt setup at boot, `crate::interrupts`).
pub(crate) fn with_space<R>(
    s: SandboxId,
    f: impl FnOnce(&mut VirtualConfig, &mut Access) -> R,
) -> R {
    let mut space = SPACES[s.index() % MAX_SANDBOXES].lock();
    f(&mut space, &mut REAL.lock())
}

/// Quiets sandbox `s`'s functions once its vCPUs stopped (`VirtualConfig::quiesce`):
/// a stopped sandbox's device neither masters the bus nor interrupts its cores;
/// `restart` gives the next launch INTx enabled, as at boot.
pub fn quiesce(s: SandboxId, restart: bool) {
    let mut space = SPACES[s.index() % MAX_SANDBOXES].lock();
    space.quiesce(&mut *REAL.lock(), restart);
}
