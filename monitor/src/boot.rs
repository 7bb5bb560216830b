//! The boot sequence on the boot core: every check that can refuse the machine or the
//! image comes first and ends with one clear line and a failing shutdown; then memory,
//! cores and the hand-off to the vmx code.

use crate::arch::{apic, cpu, idt, paging, pic, tsc};
use crate::system::System;
use crate::{bootinfo, cores, frame_pool, memory, smp};
use core::cell::UnsafeCell;
use core::fmt::Display;
use quest_abi::{CoreId, MAX_CORES};
use quest_monitor_core::backend::Backend;

/// The boot core's emergency (IST) stack; APs get theirs from the frame pool.
#[repr(C, align(16))]
struct BootIstStack(UnsafeCell<[u8; 16384]>);
// SAFETY: only the CPU uses it, as the boot core's IST stack.
unsafe impl Sync for BootIstStack {}
static BOOT_IST: BootIstStack = BootIstStack(UnsafeCell::new([0; 16384]));

/// Prints `quest: <why>` and stops the machine with a failure status.
pub fn refuse(why: impl Display) -> ! {
    crate::println!("quest: {why}");
    crate::shutdown::shutdown(false)
}

/// Unwraps or refuses.
fn check<T, E: Display>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| refuse(e))
}

/// The boot core's path from GRUB to its vCPU.
///
/// # Safety
/// Called once, from the 64-bit entry, with GRUB's magic and boot information address.
pub unsafe fn run(magic: u32, mbi_addr: u64) -> ! {
    crate::console::init(crate::console::DEFAULT_PORT);
    crate::println!("quest: monitor {} starting", env!("CARGO_PKG_VERSION"));
    idt::init();
    // SAFETY: first thing on the boot core, interrupts off; BOOT_IST is its own.
    unsafe { cpu::init_core(0, BOOT_IST.0.get() as u64 + 16384) };

    // SAFETY: per this function's contract.
    let info = check(unsafe { bootinfo::read(magic, mbi_addr) });

    // The CPU first: VT-x or SVM (CPUID, then only the MSRs it names), then the APIC:
    // VT-x sandboxes use the x2APIC directly; the SVM backend also runs on an xAPIC.
    match check(crate::svm::choose()) {
        Backend::Vmx => {
            check(crate::vmx::check_support());
        }
        Backend::Svm(caps) => crate::println!(
            "quest: AMD SVM with nested paging ({} ASIDs, next-RIP save {})",
            caps.asids,
            if caps.next_rip { "yes" } else { "no" }
        ),
    }
    if apic::choose() == apic::Mode::Xapic && !crate::svm::active() {
        refuse("this CPU has no x2APIC; Quest needs it");
    }
    // SAFETY: the mode was chosen above; interrupts are off.
    unsafe { apic::enable() };
    // SAFETY: boot core, before any sandbox runs (see `pic::mask_all`).
    unsafe { pic::mask_all() };

    // SAFETY: `info.blob` is the loaded `.quest_blob` section, never written.
    let blob = check(unsafe { crate::blob::open(info.blob) });
    let table = blob.table;
    if table.console_port() != crate::console::DEFAULT_PORT {
        crate::console::init(table.console_port());
    }
    crate::println!(
        "quest: table '{}' valid: {} sandboxes, {} vcpus, {} channels, {} payloads",
        table.name(),
        table.sandbox_count(),
        table.vcpu_count(),
        table.channel_count(),
        table.payload_count(),
    );

    // SAFETY: the root comes from GRUB's copy of the firmware RSDP.
    let cores = check(unsafe { cores::discover(info.acpi_root, apic::id()) });
    let want_cores = table.cores();
    if cores.apic_ids().len() < want_cores {
        refuse(format_args!(
            "this machine has {} cores; the partition table needs {want_cores}",
            cores.apic_ids().len()
        ));
    }
    crate::println!(
        "quest: {} cores enabled in the MADT, the table uses {want_cores}",
        cores.apic_ids().len()
    );

    // PCI: scan, match the table's functions, print each; the sandboxes' virtual
    // configuration spaces are ready before any vCPU runs.
    crate::pci::init(
        &table,
        info.acpi_root,
        &crate::device_bars::HostRam::of(&info),
    );
    // Device interrupts: every I/O APIC pin masked, each sandbox's lines routed to its
    // first core, its functions' MSI translated.
    crate::interrupts::init(&table, info.acpi_root, cores.apic_ids());

    let ram_end = info
        .areas()
        .iter()
        .filter(|a| a.usable)
        .map(|a| a.range.end)
        .max()
        .unwrap_or(0);
    // SAFETY: boot core, before any AP runs.
    let mapped_limit = unsafe { paging::extend_identity_map(ram_end) };
    let placed = check(memory::plan(&info, &table, mapped_limit));
    memory::print(&placed, &table);
    frame_pool::init(placed.pool);
    // Sandbox memory is loaded (payloads copied, the rest zeroed) and the payloads'
    // SHA-256 checked later by every started core together, before any vCPU runs
    // (`smp::enter`).

    let (tsc_khz, source) =
        tsc::calibrate().unwrap_or_else(|| refuse("cannot find the TSC frequency"));
    crate::println!(
        "{}",
        quest_abi::console::Record::Tsc {
            khz: tsc_khz.into(),
            source: source.as_str(),
        }
    );
    let boot_time_us = wall_clock(tsc_khz);

    // DMA protection for the functions PCI gave the sandboxes (placed above); before
    // any sandbox runs, so none masters the bus unprotected.
    let channels = table.channel_count().min(placed.channel_hpas.len());
    crate::iommu::init(
        &table,
        info.acpi_root,
        &placed.channel_hpas[..channels],
        &cores,
    );

    let mut needed = [false; MAX_CORES as usize];
    for v in table.vcpus() {
        needed[v.core().index()] = true;
        // A standby core waits in the monitor until its vCPU arrives.
        if let Some(standby) = v.standby_core() {
            needed[standby.index()] = true;
        }
    }
    check(smp::start_aps(
        &info,
        cores.apic_ids(),
        &needed[..want_cores],
    ));
    crate::println!(
        "quest: {} of {} cores running; {} KiB of monitor frames free",
        needed.iter().filter(|&&n| n).count(),
        cores.apic_ids().len(),
        frame_pool::free_frames() * 4,
    );

    let system = smp::release(System {
        table,
        payload_area: blob.payload_area,
        channel_hpas: placed.channel_hpas,
        cores,
        tsc_khz,
        boot_time_us,
        started_cores: 1 + needed.iter().skip(1).filter(|&&n| n).count(),
    });
    smp::enter(CoreId::new(0), system)
}

/// The wall-clock time (microseconds since the Unix epoch) at which the TSC read 0, from
/// the CMOS RTC; 0 ("unknown", as the boot information defines it) without a usable RTC.
fn wall_clock(tsc_khz: u32) -> u64 {
    use quest_monitor_core::rtc_time::{decode, time_at_tsc_zero, unix_micros};
    let Some((registers, at)) = crate::arch::rtc::read() else {
        crate::println!("quest: no readable CMOS RTC; sandboxes get boot time 0 (unknown)");
        return 0;
    };
    match decode(&registers).and_then(|dt| Ok((dt, unix_micros(&dt)?))) {
        Ok((dt, now_us)) => {
            crate::println!(
                "quest: RTC {:04}-{:02}-{:02} {:02}:{:02}:{:02} ({} s since the epoch)",
                dt.year,
                dt.month,
                dt.day,
                dt.hour,
                dt.minute,
                dt.second,
                now_us / 1_000_000
            );
            time_at_tsc_zero(now_us, at, tsc_khz)
        }
        Err(e) => {
            crate::println!(
                "quest: the CMOS RTC time is invalid ({e}); sandboxes get boot time 0 (unknown)"
            );
            0
        }
    }
}
