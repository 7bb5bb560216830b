//! The attacks. Each returns `Ok(what happened)` only if it was *not* stopped.

use alloc::format;
use alloc::string::String;
use quest_rt::quest_abi::directory::ROLE_READER;
use quest_rt::quest_abi::hypercall::{Hypercall, ERR_INVALID, OK};
use quest_rt::{println, Ctx};

/// IA32_APIC_BASE: rewriting it could disable or move the core's local APIC.
const IA32_APIC_BASE: u32 = 0x1b;
/// The x2APIC interrupt command register.
const X2APIC_ICR: u32 = 0x830;
/// ICR: fixed delivery mode, physical destination, vector 0x40 (SDM Vol. 3A, 11.6.1).
const ICR_FIXED_VECTOR_0X40: u64 = 0x40;
/// The monitor's console UART.
const CONSOLE_PORT: u16 = 0x3f8;

fn number(s: &str) -> Result<u64, &'static str> {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| "bad number in attack argument")
}

/// The attack's `:value` as a `T` (`too_large` if it does not fit), or `default` without one.
fn value_or<T: TryFrom<u64>>(
    value: Option<&str>,
    default: T,
    too_large: &'static str,
) -> Result<T, &'static str> {
    match value {
        Some(v) => T::try_from(number(v)?).map_err(|_| too_large),
        None => Ok(default),
    }
}

fn wrmsr(msr: u32, value: u64) {
    // SAFETY: deliberately unsound: the attack is that this privileged write must never
    // reach the hardware; the monitor's MSR bitmap traps it.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32,
            in("edx") (value >> 32) as u32, options(nostack));
    }
}

/// Runs attack `name` (with its optional `value`).
pub fn run(ctx: &Ctx, name: &str, value: Option<&str>) -> Result<String, &'static str> {
    match name {
        "read-outside" | "write-outside" => {
            // RAM ends at `ram_size` (2 MiB aligned): the next 2 MiB page is not ours.
            let gpa = ctx.boot_info().ram_size.get();
            quest_rt::paging::map_large(gpa)?;
            let ptr = gpa as *mut u64;
            if name == "read-outside" {
                println!("attacker: reading {gpa:#x}, past the end of its RAM");
                // SAFETY: deliberately unsound: the page is mapped in our page tables but
                // not in our EPT, so the monitor must stop us here.
                let v = unsafe { ptr.read_volatile() };
                Ok(format!("read {v:#x} at {gpa:#x}"))
            } else {
                println!("attacker: writing {gpa:#x}, past the end of its RAM");
                // SAFETY: deliberately unsound, as above.
                unsafe { ptr.write_volatile(0xbad) };
                Ok(format!("wrote {gpa:#x}"))
            }
        }
        "write-channel" => {
            let channel = ctx
                .channels()
                .iter()
                .find(|e| e.role.get() == ROLE_READER)
                .ok_or("no channel this sandbox reads")?;
            let gpa = channel.data_gpa.get();
            quest_rt::paging::make_writable(gpa)?;
            let channel_name = quest_rt::quest_abi::name_str(&channel.name).unwrap_or("?");
            println!("attacker: writing channel {channel_name} at {gpa:#x} (read-only for us)");
            // SAFETY: deliberately unsound: EPT maps this page read-only for the reader.
            unsafe { (gpa as *mut u64).write_volatile(0xbad) };
            Ok(format!("wrote channel {channel_name} at {gpa:#x}"))
        }
        "write-calibration" => {
            use quest_rt::quest_abi::calibration::{CalibrationView, CALIBRATION_SIZE};
            use quest_rt::quest_abi::layout::CALIBRATION_GPA;
            // SAFETY: the monitor maps CALIBRATION_SIZE bytes read-only at
            // CALIBRATION_GPA in every sandbox and our page tables map them (identity).
            let page = unsafe {
                core::slice::from_raw_parts(CALIBRATION_GPA as *const u8, CALIBRATION_SIZE)
            };
            let view = CalibrationView::new(page).map_err(|_| "invalid calibration page")?;
            let c = view.constants();
            println!(
                "attacker: calibration page v{}: TSC {} kHz, {} channels, vm exit+entry {} cycles",
                view.version(),
                c.tsc_khz,
                view.channel_count(),
                c.vm_exit_entry.median
            );
            quest_rt::paging::make_writable(CALIBRATION_GPA)?;
            println!("attacker: writing the calibration page at {CALIBRATION_GPA:#x} (read-only)");
            // SAFETY: deliberately unsound: EPT maps the page read-only for every sandbox.
            unsafe { (CALIBRATION_GPA as *mut u64).write_volatile(0xbad) };
            Ok(format!(
                "wrote the calibration page at {CALIBRATION_GPA:#x}"
            ))
        }
        "port" => {
            let port: u16 = value_or(value, CONSOLE_PORT, "port beyond 0xffff")?;
            println!("attacker: out to port {port:#x}, which is not ours");
            // SAFETY: deliberately unsound: the I/O bitmap must trap this port.
            unsafe {
                core::arch::asm!("out dx, al", in("dx") port, in("al") b'!', options(nostack));
            }
            Ok(format!("wrote port {port:#x}"))
        }
        "msr" => {
            let msr: u32 = value_or(value, IA32_APIC_BASE, "MSR beyond 32 bits")?;
            println!("attacker: wrmsr {msr:#x} = 0");
            wrmsr(msr, 0);
            Ok(format!("wrote MSR {msr:#x}"))
        }
        "ipi" => {
            // Our vCPUs have virtual APIC IDs 0..n, so n is the first one that is not ours.
            let dest: u32 = value_or(value, ctx.num_vcpus(), "APIC ID beyond 32 bits")?;
            println!("attacker: IPI (vector 0x40) to apic id {dest}, which is not ours");
            wrmsr(X2APIC_ICR, (u64::from(dest) << 32) | ICR_FIXED_VECTOR_0X40);
            Ok(format!("sent an IPI to apic id {dest}"))
        }
        "triple-fault" => {
            println!("attacker: triple fault (empty IDT, then int3)");
            let idtr = [0u16; 5];
            // SAFETY: deliberately unsound: with a zero-limit IDT the breakpoint cannot be
            // delivered, which escalates to a triple fault the monitor must contain.
            unsafe {
                core::arch::asm!("lidt [{}]", "int3", in(reg) idtr.as_ptr(), options(nostack));
            }
            Ok(String::from("survived a triple fault"))
        }
        "touch" => {
            let addr: u64 = value_or(value, 0, "address beyond 64 bits")?;
            if addr == 0 {
                return Err("touch needs an address (touch:0xfebd1000)");
            }
            // Our page tables map RAM and our windows only: map the 2 MiB page around
            // the address (unless a large page already covers it), so that only the
            // EPT/NPT stands in the way.
            match quest_rt::paging::map_large(addr & !((2 << 20) - 1)) {
                Ok(()) | Err(quest_rt::paging::PagingError::CoveredByLargePage) => {}
                Err(e) => return Err(e.as_str()),
            }
            println!("attacker: reading {addr:#x} (another sandbox's device memory)");
            // SAFETY: deliberately unsound: the address is not in our EPT/NPT, so the
            // monitor must stop us here.
            let v = unsafe { (addr as *const u32).read_volatile() };
            Ok(format!("read {v:#x} at {addr:#x}"))
        }
        _ => Err("unknown attack (see the attacker's documentation)"),
    }
}

/// The `DOORBELL` hypercall with a raw index (what a hostile guest controls), through
/// quest-rt's entry (`VMCALL` or `VMMCALL`, whichever this CPU's vendor uses).
fn doorbell(index: u64) -> u64 {
    quest_rt::hypercall::hypercall(Hypercall::Doorbell, index, 0)
}

/// Rings channel indices that are not ours; each must be refused with `ERR_INVALID`,
/// and our own channel's index must work. `Err(what got through)` otherwise.
pub fn doorbell_bad_index(ctx: &Ctx) -> Result<(), String> {
    let ours = ctx.channels().len() as u64;
    if ours == 0 {
        return Err(String::from(
            "this sandbox has no channel to ring (manifest error)",
        ));
    }
    let hostile = [
        ours,
        ours + 1,
        64,
        u64::from(u32::MAX),
        u64::from(u32::MAX) + 1,
        1 << 63,
        u64::MAX,
    ];
    for index in hostile {
        let ret = doorbell(index);
        if ret != ERR_INVALID {
            return Err(format!(
                "DOORBELL({index:#x}) returned {ret:#x}, not ERR_INVALID"
            ));
        }
    }
    let ret = doorbell(ours - 1);
    if ret != OK {
        return Err(format!(
            "DOORBELL({}) on our own channel returned {ret:#x}",
            ours - 1
        ));
    }
    println!(
        "attacker: doorbell: {} hostile indices refused, our own channel rang",
        hostile.len()
    );
    Ok(())
}
