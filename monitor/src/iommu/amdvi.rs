//! AMD-Vi units from the ACPI IVRS table (`quest_monitor_core::amdvi`): one device table
//! per unit (every device ID blocked but the assigned functions', which translate
//! through their sandbox's domain), invalidation through the command buffer (completion
//! by a store the monitor polls), faults from the event log (IO_PAGE_FAULT: device,
//! address, read or write), signalled by the unit's MSI, an NMI to the fault core.
//!
//! QEMU 7.2's amd-iommu (checked in its source, `hw/i386/amd_iommu.c`) translates and
//! refuses as the spec says, but never reports: `amdvi_log_event` tests the status
//! register's overflow bit with `|` instead of `&` (`amdvi_test_mask`), so it returns
//! before writing any event, and so before raising the MSI (fixed upstream in 2025,
//! "hw/i386/amd_iommu: Fix event log generation"). What a refused DMA leaves there is one
//! bit: its page-fault path sets Signaled Target Abort in the IOMMU function's PCI status
//! register (and only for a non-zero entry without PR: see `amdvi::domain`). So each
//! poll also reads and clears that bit; when it was set and the event log holds no DMA
//! fault, the DMA came from one of the protected functions that master the bus (every
//! other device ID has a Mode 0 entry, which QEMU refuses without that path): if there
//! is exactly one, it is reported without address or direction and its owner stopped;
//! with several, the refusal is reported and nobody is stopped.
//!
//! Interrupt remapping, when the IVRS names one I/O APIC (a special device entry,
//! variety 1; QEMU lists it with `intremap=on`) behind a unit in use: each protected
//! function's device table entry points at its own 2048-entry table (IntCtl = 10b, no
//! pass bit: INIT, ExtINT, NMI and LINT messages refused), whose entries 0-31 the
//! monitor writes when the sandbox's MSI is accepted (`crate::pci_msi` via
//! [`Units::remap_msi`]; the device sends data = 0, address 0xFEE00000), then
//! INVALIDATE_INTERRUPT_TABLE and a COMPLETION_WAIT. The I/O APIC's device ID gets a
//! table whose entry `32 + line` sends each routed line to its core: the redirection
//! entries keep their fixed delivery and vector `32 + line`, which is the data that
//! names the entry. Every other device ID's interrupts are blocked. A message that names
//! an entry the monitor did not write (RemapEn = 0) is refused.
//!
//! QEMU 7.2 (`intremap=on`, measured with `irq.toml` and `dma-intr.toml`): remaps the
//! MSI and the I/O APIC's lines through these tables and refuses a message naming an
//! empty entry, but logs no event for it (`amdvi_mem_ir_write`: "TODO"); it takes a
//! device's DMA write to 0xFEExxxxx, which carries no requester ID there, for the I/O
//! APIC's (so `dma-intr.toml`'s message meets the I/O APIC's table, where entry 0x40 is
//! empty; hardware uses the device's own table, where it is empty too); and its remapped
//! message drops the trigger mode, so level lines arrive edge triggered and the guest's
//! EOI no longer reaches the I/O APIC: `crate::interrupts::level_lines_untagged` makes
//! the monitor send it.

mod remap;

use super::{
    announce, fault_core, name, Active, DmaFault, Function, NoIommu, PoolFrames, Registers,
    Units as AnyUnits, DOMAIN_TOP, MAPPED, MAX_FUNCTIONS, POLL_US,
};
use crate::arch::tsc;
use crate::cores::Cores;
use crate::sandboxes::record;
use acpi::sdt::{SdtHeader, Signature};
use acpi::AcpiTable;
use quest_abi::{HostPhysAddr, PciAddress, TableView, MAX_SANDBOXES};
use quest_monitor_core::amdvi::domain::{build_domain, DeviceTable};
use quest_monitor_core::amdvi::intremap;
use quest_monitor_core::amdvi::ivrs::{Ivrs, MAX_UNITS};
use quest_monitor_core::amdvi::regs::{self, Command, Event, Features};
use quest_monitor_core::pci::{CAPABILITIES, COMMAND, COMMAND_BUS_MASTER};
use remap::{remapping_tables, Remapping};

/// The IVRS table as the `acpi` crate finds it (validated header and checksum); the
/// blocks follow the header.
#[repr(C, packed)]
pub(super) struct IvrsTable {
    header: SdtHeader,
}

// SAFETY: a packed struct that starts with the SDT header (all the crate reads), with the
// IVRS signature.
unsafe impl AcpiTable for IvrsTable {
    const SIGNATURE: Signature = Signature::IVRS;
    fn header(&self) -> &SdtHeader {
        &self.header
    }
}

/// PCI status (the upper half of dword 0x04) bit 11: Signaled Target Abort.
const STATUS_SIGNALED_TARGET_ABORT: u32 = 1 << (16 + 11);
/// PCI status bit 4: the function has a capability list.
const STATUS_CAPABILITIES: u32 = 1 << (16 + 4);
/// Capability ID of MSI.
const CAP_MSI: u32 = 0x05;

/// One unit Quest uses, with its command buffer, event log and completion word (frames
/// of the monitor's pool).
#[derive(Debug)]
struct Unit {
    regs: Registers,
    function: PciAddress,
    features: Features,
    commands: u64,
    log: u64,
    done: u64,
    /// The command buffer's tail and the last completion number (the boot core issues
    /// commands at boot, vCPU cores later when they remap an MSI).
    ring: spin::Mutex<Ring>,
}

/// Where the monitor is in a unit's command buffer.
#[derive(Debug)]
struct Ring {
    tail: u64,
    sequence: u64,
}

impl Unit {
    fn new(base: u64, function: PciAddress) -> Result<Self, NoIommu> {
        if base >= MAPPED - regs::MMIO_SIZE {
            return Err(NoIommu::Unmapped(base));
        }
        let frames = crate::frame_pool::alloc_zeroed(3).ok_or(NoIommu::Frames)?;
        let regs = Registers(base);
        Ok(Self {
            regs,
            function,
            features: Features(regs.read64(regs::EXTENDED_FEATURES)),
            commands: frames,
            log: frames + 0x1000,
            done: frames + 0x2000,
            ring: spin::Mutex::new(Ring {
                tail: 0,
                sequence: 0,
            }),
        })
    }

    /// Puts `command` into the command buffer (the caller tells the unit).
    fn push(&self, ring: &mut Ring, command: Command) {
        let slot = (self.commands + ring.tail) as *mut Command;
        // SAFETY: a 16-byte slot of this unit's command buffer frame (tail is masked to
        // the ring); the unit reads it only once the tail register moves past it.
        unsafe { slot.write_volatile(command) };
        ring.tail = (ring.tail + regs::ENTRY_SIZE) & regs::RING_MASK;
    }

    /// Runs `commands` and waits until the unit has carried out all of them (a
    /// COMPLETION_WAIT after every 128, so the 256-entry ring never fills).
    fn run(&self, commands: impl Iterator<Item = Command>) -> Result<(), NoIommu> {
        let mut ring = self.ring.lock();
        let mut pending = 0;
        for c in commands {
            self.push(&mut ring, c);
            pending += 1;
            if pending == 128 {
                self.complete(&mut ring)?;
                pending = 0;
            }
        }
        self.complete(&mut ring)
    }

    /// A COMPLETION_WAIT, and the wait for its store.
    fn complete(&self, ring: &mut Ring) -> Result<(), NoIommu> {
        ring.sequence += 1;
        let n = ring.sequence;
        self.push(ring, regs::completion_wait(self.done, n));
        self.regs.write64(regs::COMMAND_TAIL, ring.tail);
        let done = self.done as *const u64;
        self.regs.wait("its commands", |_| {
            // SAFETY: this unit's completion frame (identity mapped), written by the unit.
            unsafe { done.read_volatile() == n }
        })
    }

    /// Turns the unit on with device table `dt`: rings, translation, the event log, the
    /// invalidation of every entry and domain it may have cached; the event interrupt an
    /// NMI to `fault_apic` (not enabled until the fault core first enters its guest:
    /// [`Units::arm`]). Whether the interrupt is set up.
    fn enable(
        &self,
        dt: &DeviceTable,
        domains: &[Option<u16>],
        fault_apic: Option<u32>,
    ) -> Result<bool, NoIommu> {
        let r = self.regs;
        r.write64(regs::CONTROL, 0);
        r.write64(
            regs::DEVICE_TABLE_BASE,
            regs::device_table_base(dt.base().as_u64(), dt.pages()),
        );
        r.write64(regs::COMMAND_BASE, regs::ring_base(self.commands));
        r.write64(regs::COMMAND_HEAD, 0);
        r.write64(regs::COMMAND_TAIL, 0);
        self.ring.lock().tail = 0;
        r.write64(regs::EVENT_LOG_BASE, regs::ring_base(self.log));
        r.write64(regs::EVENT_HEAD, 0);
        r.write64(regs::EVENT_TAIL, 0);
        r.write64(
            regs::STATUS,
            regs::STATUS_EVENT_OVERFLOW | regs::STATUS_EVENT_INT | regs::STATUS_COMPLETION_INT,
        );
        self.take_target_abort();
        let interrupt = fault_apic
            .and_then(regs::event_nmi)
            .is_some_and(|(address, data)| self.set_msi(address, data));
        r.write64(
            regs::CONTROL,
            regs::CONTROL_IOMMU_EN | regs::CONTROL_EVENT_LOG_EN | regs::CONTROL_COMMAND_EN,
        );
        // Every entry of the table, its interrupt table and every domain: what the unit
        // may hold from an earlier table (firmware's) must not outlive this one.
        let ids = (0..dt.pages() * regs::DTES_PER_PAGE).flat_map(|id| {
            [
                regs::invalidate_devtab_entry(id as u16),
                intremap::invalidate_interrupt_table(id as u16),
            ]
        });
        let pages = domains
            .iter()
            .flatten()
            .map(|&d| regs::invalidate_domain(d));
        self.run(ids.chain(pages))?;
        Ok(interrupt)
    }

    /// Programs the unit's PCI function's MSI capability with `address` and `data` and
    /// enables it; false if it has none.
    fn set_msi(&self, address: u32, data: u32) -> bool {
        let f = self.function;
        let Some(cap) = capability(f, CAP_MSI) else {
            return false;
        };
        let control = crate::pci::real_read(f, cap);
        let data_at = if control & (1 << 23) != 0 {
            // 64-bit message address: upper half at 8, data at 12.
            crate::pci::real_write(f, cap + 8, 0);
            cap + 12
        } else {
            cap + 8
        };
        crate::pci::real_write(f, cap + 4, address);
        crate::pci::real_write(f, data_at, data);
        // Enable (bit 16), one message (bits 22:20 = 0).
        crate::pci::real_write(f, cap, (control & !(7 << 20)) | 1 << 16);
        true
    }

    /// Reads and clears Signaled Target Abort in the unit's PCI status.
    fn take_target_abort(&self) -> bool {
        let status = crate::pci::real_read(self.function, COMMAND);
        if status & STATUS_SIGNALED_TARGET_ABORT == 0 {
            return false;
        }
        // The command half as it is; the status bits are write-1-to-clear.
        crate::pci::real_write(
            self.function,
            COMMAND,
            (status & 0xffff) | STATUS_SIGNALED_TARGET_ABORT,
        );
        true
    }

    /// Takes every event of the log (clearing it) and reports DMA faults to `each` (the
    /// source: the protected function whose requests carry the event's device ID, else
    /// that ID as an address); then the QEMU 7.2 fallback (module documentation).
    /// `index`: this unit's, in `functions` (the protected ones).
    fn take_faults(
        &self,
        index: usize,
        functions: &[Option<Function>],
        each: &mut dyn FnMut(DmaFault),
    ) {
        let mine = || functions.iter().flatten().filter(move |f| f.unit == index);
        let r = self.regs;
        let mut head = r.read64(regs::EVENT_HEAD) & regs::RING_MASK;
        let tail = r.read64(regs::EVENT_TAIL) & regs::RING_MASK;
        let mut dma_faults = 0;
        for _ in 0..regs::RING_ENTRIES {
            if head == tail {
                break;
            }
            let slot = (self.log + head) as *mut [u64; 2];
            // SAFETY: a 16-byte slot of this unit's event log frame (head is masked to
            // the ring), written by the unit before it moved the tail past it; zeroed so
            // that a stale entry never reads as a new one.
            let entry = unsafe {
                let e = slot.read_volatile();
                slot.write_volatile([0, 0]);
                e
            };
            head = (head + regs::ENTRY_SIZE) & regs::RING_MASK;
            let Some(e) = Event::decode(entry) else {
                continue;
            };
            if e.is_dma_fault() {
                dma_faults += 1;
                let id = e.device.to_u16();
                let source = mine()
                    .find(|f| f.requester == id)
                    .map_or(e.device, |f| f.address);
                each(DmaFault {
                    source,
                    address: Some(e.address),
                    write: Some(e.write()),
                    why: e.reason(),
                    interrupt: false,
                });
            } else if e.is_interrupt_fault() {
                // A refused interrupt (remapping): its owner is stopped like for a DMA.
                let id = e.device.to_u16();
                let source = mine()
                    .find(|f| f.requester == id)
                    .map_or(e.device, |f| f.address);
                each(DmaFault {
                    source,
                    address: None,
                    write: None,
                    why: e.reason(),
                    interrupt: true,
                });
            } else {
                crate::println!(
                    "quest: IOMMU AMD-Vi event: {} (device {}, {:#x})",
                    e.reason(),
                    e.device,
                    e.address
                );
            }
        }
        r.write64(regs::EVENT_HEAD, head);
        let status = r.read64(regs::STATUS);
        if status & regs::STATUS_EVENT_OVERFLOW != 0 {
            crate::println!("quest: IOMMU AMD-Vi event log overflowed: events lost");
            // The log stops when full: restart it empty.
            let control = r.read64(regs::CONTROL);
            r.write64(regs::CONTROL, control & !regs::CONTROL_EVENT_LOG_EN);
            r.write64(regs::EVENT_HEAD, 0);
            r.write64(regs::EVENT_TAIL, 0);
            r.write64(regs::STATUS, regs::STATUS_EVENT_OVERFLOW);
            r.write64(regs::CONTROL, control);
        }
        r.write64(regs::STATUS, status & regs::STATUS_EVENT_INT);
        if !self.take_target_abort() || dma_faults > 0 {
            return;
        }
        let mut masters = mine()
            .map(|f| f.address)
            .filter(|&f| crate::pci::real_read(f, COMMAND) & u32::from(COMMAND_BUS_MASTER) != 0);
        match (masters.next(), masters.count()) {
            (Some(source), 0) => each(DmaFault {
                source,
                address: None,
                write: None,
                why: "the IOMMU logged no event: address unknown",
                interrupt: false,
            }),
            (Some(_), others) => crate::println!(
                "quest: DMA fault: the IOMMU refused a DMA of one of {} devices but logged no event; no sandbox stopped",
                others + 1
            ),
            (None, _) => {}
        }
    }
}

/// The capability `id` of function `f` (its offset), walking at most 48 entries.
fn capability(f: PciAddress, id: u32) -> Option<u8> {
    if crate::pci::real_read(f, COMMAND) & STATUS_CAPABILITIES == 0 {
        return None;
    }
    let mut at = (crate::pci::real_read(f, CAPABILITIES) & 0xfc) as u8;
    for _ in 0..48 {
        if at < 0x40 {
            return None;
        }
        let header = crate::pci::real_read(f, at);
        if header & 0xff == id {
            return Some(at);
        }
        at = ((header >> 8) & 0xfc) as u8;
    }
    None
}

/// The units that translate, and interrupt remapping when it is on.
#[derive(Debug)]
pub(super) struct Units {
    units: [Option<Unit>; MAX_UNITS],
    remapping: Option<Remapping>,
}

impl Units {
    /// Enables every unit's event interrupt.
    pub(super) fn arm(&self) {
        for u in self.units.iter().flatten() {
            let control = u.regs.read64(regs::CONTROL);
            u.regs
                .write64(regs::CONTROL, control | regs::CONTROL_EVENT_INT_EN);
        }
    }

    /// Takes every unit's faults.
    pub(super) fn take_faults(
        &self,
        functions: &[Option<Function>],
        each: &mut dyn FnMut(DmaFault),
    ) {
        for (i, u) in self.units.iter().enumerate() {
            if let Some(u) = u {
                u.take_faults(i, functions, each);
            }
        }
    }
}

/// Builds the domains and device tables from the IVRS table `ivrs` and turns the units
/// on.
#[inline(never)] // Its locals stay off the boot core's long-lived frames.
pub(super) fn protect(
    table: &TableView<'static>,
    ivrs: &[u8],
    channel_hpas: &[HostPhysAddr],
    cores: &Cores,
) -> Result<Active, NoIommu> {
    let ivrs = Ivrs::parse(ivrs).map_err(NoIommu::Ivrs)?;
    // Which unit each function is behind (segment 0: all Quest scans), and the device
    // ID its requests carry there.
    let mut functions = [None; MAX_FUNCTIONS];
    let mut n = 0;
    let mut own = None;
    crate::pci::assigned(|s, f, _| {
        if ivrs.units().any(|u| u.function == f) {
            own = Some((s, f));
        }
        if let (Some((u, id)), Some(slot)) = (ivrs.unit_for(0, f), functions.get_mut(n)) {
            *slot = Some(Function {
                address: f,
                sandbox: s,
                unit: u,
                requester: id,
            });
            n += 1;
        }
    });
    // A sandbox that owned an IOMMU could point its interrupt elsewhere.
    if let Some((s, f)) = own {
        return Err(NoIommu::OwnFunction(name(table, s), f));
    }
    let mut units: [Option<Unit>; MAX_UNITS] = [const { None }; MAX_UNITS];
    for (i, u) in ivrs.units().enumerate() {
        if functions.iter().flatten().any(|f: &Function| f.unit == i) {
            units[i] = Some(Unit::new(u.base, u.function)?);
        }
    }
    let first = units.iter().flatten().next().ok_or(NoIommu::NotCovered)?;
    let base = first.regs.0;
    let levels = regs::choose_levels(first.features, DOMAIN_TOP).ok_or(NoIommu::Levels(base))?;
    for u in units.iter().flatten() {
        if regs::choose_levels(u.features, levels.limit()) != Some(levels) {
            return Err(NoIommu::Levels(u.regs.0));
        }
    }

    // One domain per sandbox with a function (domain ID = sandbox index + 1), one device
    // table per unit.
    let started = tsc::now();
    let mut roots: [Option<HostPhysAddr>; MAX_SANDBOXES] = [None; MAX_SANDBOXES];
    let mut domain_ids = [None; MAX_SANDBOXES];
    for f in functions.iter().flatten() {
        let s = f.sandbox;
        let i = s.index() % MAX_SANDBOXES;
        if roots[i].is_some() {
            continue;
        }
        let placement = record(s).placement();
        let place = quest_monitor_core::sandbox_ept::HostPlacement {
            sandbox: &placement,
            channel_hpas,
            calibration_hpa: None,
            device_memory: &[],
        };
        let d = build_domain(
            table.raw(),
            s.index(),
            &place,
            PoolFrames { flush: false },
            levels,
        )
        .map_err(|e| NoIommu::AmdDomain(name(table, s), e))?;
        roots[i] = Some(d.root());
        domain_ids[i] = Some(s.index() as u16 + 1);
    }
    let remapping = remapping_tables(&ivrs, &units, &functions)?;
    let mut tables = [None; MAX_UNITS];
    for (i, u) in ivrs.units().enumerate() {
        if units[i].is_none() {
            continue;
        }
        let mine = || functions.iter().flatten().filter(move |f| f.unit == i);
        let highest = mine()
            .map(|f| f.requester)
            .chain(u.highest_id())
            .max()
            .unwrap_or(0);
        let pages = DeviceTable::pages_for(highest);
        let frames = crate::frame_pool::alloc_zeroed(pages as usize).ok_or(NoIommu::Frames)?;
        let mut mem = PoolFrames { flush: false };
        let dt = DeviceTable::new(&mut mem, HostPhysAddr::new(frames), pages);
        let indexed = functions
            .iter()
            .enumerate()
            .filter_map(|(j, f)| f.as_ref().filter(|f| f.unit == i).map(|f| (j, f)));
        for (j, f) in indexed {
            let id = f.requester;
            let s = f.sandbox;
            let k = s.index() % MAX_SANDBOXES;
            let (Some(root), Some(domain)) = (roots[k], domain_ids[k]) else {
                continue;
            };
            let interrupts = match remapping.as_ref().map(|r| r.tables[j]) {
                Some(table) if table != 0 => intremap::dte_interrupts(table),
                _ => regs::DTE_INTERRUPTS_BLOCKED,
            };
            let dte = regs::dte_translated(root.as_u64(), levels, domain, interrupts);
            // Two functions behind one alias share its entry: fine within a sandbox.
            if dt.entry(&mem, id) == Some(dte) {
                continue;
            }
            dt.assign(&mut mem, id, dte)
                .map_err(|e| NoIommu::AmdDomain(name(table, s), e))?;
        }
        if let Some(io) = remapping
            .as_ref()
            .map(|r| r.ioapic)
            .filter(|io| io.unit == i)
        {
            let dte = regs::dte_interrupts_only(intremap::dte_interrupts(io.table));
            dt.assign(&mut mem, io.id, dte)
                .map_err(|e| NoIommu::AmdDomain("(the I/O APIC)", e))?;
        }
        if remapping.is_some() {
            dt.block_interrupts(&mut mem);
        }
        tables[i] = Some(dt);
    }
    let cycles = tsc::now() - started;

    let (fault_core, fault_apic) = fault_core(&functions, cores);
    let mut interrupt = true;
    for (u, dt) in units.iter().zip(&tables) {
        if let (Some(u), Some(dt)) = (u, dt) {
            interrupt &= u.enable(dt, &domain_ids, fault_apic)?;
        }
    }
    let active = Active {
        units: AnyUnits::AmdVi(Units { units, remapping }),
        functions,
        fault_core,
        fault_apic: fault_apic.filter(|_| interrupt),
        poll_cycles: POLL_US * u64::from(tsc::khz()) / 1000,
    };
    let domains = domain_ids.iter().flatten().count();
    if let AnyUnits::AmdVi(Units {
        remapping: Some(r), ..
    }) = &active.units
    {
        let mut lines = 0;
        crate::interrupts::each_route(|_, _| lines += 1);
        crate::println!(
            "quest: AMD-Vi interrupt remapping on: {} devices and the I/O APIC (device {}, {lines} lines), every other device's interrupts blocked",
            r.tables.iter().filter(|&&t| t != 0).count(),
            PciAddress::from_u16(r.ioapic.id)
        );
    } else {
        crate::println!(
            "quest: AMD-Vi without interrupt remapping (the IVRS names no I/O APIC of a unit in use): protected devices' interrupts blocked, their MSI refused"
        );
    }
    announce("AMD-Vi", base, &active, domains, levels.bits(), cycles);
    Ok(active)
}
