//! Starting the application processors the table needs (INIT-SIPI-SIPI through the
//! x2APIC, one at a time) and sending every core to its vCPU once `System` exists.

use crate::arch::{apic, cpu, paging, trampoline, tsc};
use crate::bootinfo::BootInfo;
use crate::system::System;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use quest_abi::{CoreId, MAX_CORES};
use quest_monitor_core::frames::FRAME_SIZE;
use quest_monitor_core::placement::Range;
use spin::Once;

/// Each core's stack (frames from the pool).
const STACK_FRAMES: usize = 16;
/// Each core's emergency (IST) stack for double faults and NMIs.
const IST_FRAMES: usize = 4;
/// How long an AP may take to report online after its SIPIs.
const ONLINE_TIMEOUT_US: u64 = 200_000;

static ONLINE: [AtomicBool; MAX_CORES as usize] =
    [const { AtomicBool::new(false) }; MAX_CORES as usize];
static IST_TOP: [AtomicU64; MAX_CORES as usize] = [const { AtomicU64::new(0) }; MAX_CORES as usize];
/// Per core: x2APIC ID it must find itself to have.
static EXPECTED_ID: [AtomicU64; MAX_CORES as usize] =
    [const { AtomicU64::new(0) }; MAX_CORES as usize];
static SYSTEM: Once<System> = Once::new();

/// Why an AP could not be started. Display gives the text after `quest: `.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmpError {
    /// No free page below 1 MiB for the trampoline.
    TrampolinePage,
    /// The frame pool could not provide a stack.
    StackMemory(CoreId),
    /// The core did not report online in time.
    NoResponse {
        /// Logical core.
        core: CoreId,
        /// Its x2APIC ID.
        apic_id: u32,
    },
}

impl fmt::Display for SmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TrampolinePage => {
                f.write_str("no free page below 1 MiB to start the other cores")
            }
            Self::StackMemory(c) => write!(f, "out of monitor memory for the stacks of core {c}"),
            Self::NoResponse { core, apic_id } => {
                write!(f, "core {core} (x2APIC ID {apic_id}) did not come online")
            }
        }
    }
}

/// A 4 KiB page in usable low memory, clear of the boot information.
fn trampoline_page(info: &BootInfo) -> Option<u64> {
    (8..0x9f).map(|p| p as u64 * FRAME_SIZE).find(|&base| {
        let page = Range::sized(base, FRAME_SIZE);
        info.areas()
            .iter()
            .any(|a| a.usable && a.range.start <= page.start && page.end <= a.range.end)
            && !info.mbi.overlaps(&page)
    })
}

/// Allocates a stack and returns its top.
fn stack(frames: usize, core: CoreId) -> Result<u64, SmpError> {
    crate::frame_pool::alloc_zeroed(frames)
        .map(|base| base + frames as u64 * FRAME_SIZE)
        .ok_or(SmpError::StackMemory(core))
}

/// Starts every core in `needed` except the boot core, one at a time, and waits for each
/// to report online. `apic_ids` maps logical index to x2APIC ID.
pub fn start_aps(info: &BootInfo, apic_ids: &[u32], needed: &[bool]) -> Result<(), SmpError> {
    if !needed.iter().skip(1).any(|&n| n) {
        return Ok(());
    }
    let page = trampoline_page(info).ok_or(SmpError::TrampolinePage)?;
    let layout = trampoline::layout();
    let write = |offset: usize, value: u64| {
        // SAFETY: `page` is a free low-memory page owned by the monitor from now on,
        // and the offset is inside the copied trampoline (an 8-byte aligned slot).
        unsafe { core::ptr::write_volatile((page as usize + offset) as *mut u64, value) };
    };
    // SAFETY: see `write`; the trampoline is smaller than a page.
    unsafe {
        core::ptr::copy_nonoverlapping(layout.code.as_ptr(), page as *mut u8, layout.code.len())
    };
    write(layout.cr3, paging::root());
    write(layout.entry, ap_main as *const () as u64);
    for (i, &apic_id) in apic_ids.iter().enumerate().skip(1) {
        let Some(core) = CoreId::from_index(i).filter(|_| needed.get(i) == Some(&true)) else {
            continue;
        };
        IST_TOP[i].store(stack(IST_FRAMES, core)?, Ordering::Relaxed);
        EXPECTED_ID[i].store(apic_id as u64, Ordering::Relaxed);
        write(layout.stack, stack(STACK_FRAMES, core)?);
        write(layout.core, u64::from(core.as_u32()));
        // SAFETY: `apic_id` is an enabled processor from the MADT that the monitor has
        // not started (each is started once); the page holds the trampoline. Timing
        // follows SDM Vol. 3A 8.4.4.1 (10 ms after INIT, 200 us between SIPIs).
        unsafe {
            apic::send_init(apic_id);
            tsc::delay_us(10_000);
            apic::send_startup(apic_id, (page >> 12) as u8);
            tsc::delay_us(200);
            if !ONLINE[i].load(Ordering::Acquire) {
                apic::send_startup(apic_id, (page >> 12) as u8);
            }
        }
        let deadline = tsc::now() + ONLINE_TIMEOUT_US * tsc::khz() as u64 / 1000;
        while !ONLINE[i].load(Ordering::Acquire) {
            if tsc::now() > deadline {
                return Err(SmpError::NoResponse { core, apic_id });
            }
            core::hint::spin_loop();
        }
    }
    Ok(())
}

/// Where an AP arrives from the trampoline, on its own stack.
extern "C" fn ap_main(core: u64) -> ! {
    // `start_aps` wrote a logical core index below MAX_CORES.
    let core = CoreId::new(core as u32);
    let i = core.index();
    // SAFETY: first code on this core, interrupts off; the IST stack was allocated for
    // this core alone before its SIPI; the APIC mode was chosen on the boot core (all
    // cores of one machine share it).
    unsafe {
        cpu::init_core(i, IST_TOP[i].load(Ordering::Relaxed));
        apic::enable();
    }
    let id = apic::id();
    let expected = EXPECTED_ID[i].load(Ordering::Relaxed) as u32;
    if id != expected {
        crate::println!(
            "quest: core {core} woke with {} ID {id}, expected {expected}",
            apic::mode().name()
        );
        park();
    }
    crate::println!(
        "quest: core {core} online ({} ID {id})",
        apic::mode().name()
    );
    ONLINE[i].store(true, Ordering::Release);
    let system = SYSTEM.wait();
    enter(core, system)
}

/// The published `System` (`None` before [`release`]).
pub fn system() -> Option<&'static System> {
    SYSTEM.get()
}

/// Publishes the finished `System` (boot core, once); waiting APs proceed.
pub fn release(system: System) -> &'static System {
    SYSTEM.call_once(|| system)
}

/// Set by the one core that reports a corrupt payload.
static REFUSING: AtomicBool = AtomicBool::new(false);

/// Loads this core's share of sandbox memory and checks its share of the payload hashes
/// (all started cores together; none passes before all are done), clears the XMM
/// registers the hashing used, calibrates (`calibrate`, all started cores together), then
/// runs this core's vCPU, or parks the core if it
/// has none. A corrupt payload: one core prints why and stops the machine, the others
/// park.
pub fn enter(core: CoreId, system: &'static System) -> ! {
    crate::sandbox_memory::boot_share(system);
    let verified = system.verify_payloads();
    crate::arch::sha256::scrub();
    match verified {
        Ok(true) => {
            crate::println!(
            "quest: sandbox memory initialised and {} payloads verified (SHA-256{}) on {} cores",
            system.table.payload_count(),
            if crate::arch::sha256::available() { ", SHA-NI" } else { "" },
            system.started_cores
        )
        }
        Ok(false) => {}
        Err(e) => {
            if REFUSING.swap(true, Ordering::AcqRel) {
                park();
            }
            crate::boot::refuse(e)
        }
    }
    // Every started core takes part; no vCPU runs before the page is filled.
    crate::calibrate::run(core, system);
    if let Some(v) = system.table.vcpu_on_core(core) {
        if !crate::pci::may_start(v.sandbox()) {
            crate::vmx::lifecycle::not_started(system, v.sandbox(), v.index());
        }
    }
    if system.sandbox_on_core(core).is_some() || system.standby_on_core(core) {
        if crate::svm::active() {
            crate::svm::run_core(core, system)
        }
        crate::vmx::run_core(core, system)
    }
    park()
}

/// Halts this core for good (interrupts off; an NMI is reported by the IDT).
pub fn park() -> ! {
    crate::shutdown::halt_forever()
}
