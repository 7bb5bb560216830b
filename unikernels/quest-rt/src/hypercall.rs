//! Quest's own hypercalls (number in RAX, arguments in RDI and RSI, result in RAX; see
//! `quest_abi::hypercall`), entered with `VMCALL` on Intel and `VMMCALL` on AMD.
//!
//! Each instruction raises #UD on the other vendor's processors (Intel SDM Vol. 2B,
//! VMCALL; AMD APM Vol. 3, VMMCALL), so the runtime asks CPUID leaf 0 for the vendor once
//! and keeps the answer in an atomic: AMD and Hygon (AMD's design) use `VMMCALL`,
//! everyone else `VMCALL`. The monitor passes leaf 0 through unchanged. Hermit's uhyve
//! hypercalls are port I/O and need neither.

use core::arch::x86_64::__cpuid;
use core::sync::atomic::{AtomicU8, Ordering};
use quest_abi::hypercall::{self as nr, Hypercall};

/// The instruction that enters the monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Instruction {
    /// `VMCALL` (Intel VT-x).
    Vmcall,
    /// `VMMCALL` (AMD SVM).
    Vmmcall,
}

impl Instruction {
    /// The instruction for the vendor string of CPUID leaf 0 (EBX, EDX, ECX).
    pub const fn for_vendor(ebx: u32, edx: u32, ecx: u32) -> Self {
        // "AuthenticAMD" and "HygonGenuine", as the three registers hold them.
        const AMD: [u32; 3] = words(b"AuthenticAMD");
        const HYGON: [u32; 3] = words(b"HygonGenuine");
        let v = [ebx, edx, ecx];
        if (v[0] == AMD[0] && v[1] == AMD[1] && v[2] == AMD[2])
            || (v[0] == HYGON[0] && v[1] == HYGON[1] && v[2] == HYGON[2])
        {
            Self::Vmmcall
        } else {
            Self::Vmcall
        }
    }

    /// This processor's instruction (CPUID on the first call, then the cached answer; a
    /// race only repeats the same CPUID). The runtime calls it once at start, on vCPU 0.
    pub fn current() -> Self {
        // A non-zero "unknown" keeps the cache in `.data`, so zeroing `.bss` at start never
        // wipes a choice already made (the bad-boot path prints before that).
        const UNKNOWN: u8 = 0xff;
        const VMCALL: u8 = 1;
        const VMMCALL: u8 = 2;
        static CHOSEN: AtomicU8 = AtomicU8::new(UNKNOWN);
        match CHOSEN.load(Ordering::Relaxed) {
            VMCALL => Self::Vmcall,
            VMMCALL => Self::Vmmcall,
            _ => {
                let leaf = __cpuid(0);
                let chosen = Self::for_vendor(leaf.ebx, leaf.edx, leaf.ecx);
                let code = if chosen == Self::Vmcall {
                    VMCALL
                } else {
                    VMMCALL
                };
                CHOSEN.store(code, Ordering::Relaxed);
                chosen
            }
        }
    }
}

/// The vendor string as CPUID leaf 0 returns it in EBX, EDX, ECX.
const fn words(s: &[u8; 12]) -> [u32; 3] {
    [
        u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        u32::from_le_bytes([s[4], s[5], s[6], s[7]]),
        u32::from_le_bytes([s[8], s[9], s[10], s[11]]),
    ]
}

// The rule, checked when the runtime is compiled (this crate cannot run host tests: it
// brings its own panic handler).
const _: () = {
    let [b, d, c] = words(b"AuthenticAMD");
    assert!(matches!(
        Instruction::for_vendor(b, d, c),
        Instruction::Vmmcall
    ));
    let [b, d, c] = words(b"HygonGenuine");
    assert!(matches!(
        Instruction::for_vendor(b, d, c),
        Instruction::Vmmcall
    ));
    let [b, d, c] = words(b"GenuineIntel");
    assert!(matches!(
        Instruction::for_vendor(b, d, c),
        Instruction::Vmcall
    ));
    // Intel's leaf 0 as the registers hold it (EBX "Genu", EDX "ineI", ECX "ntel").
    assert!(matches!(
        Instruction::for_vendor(0x756e_6547, 0x4965_6e69, 0x6c65_746e),
        Instruction::Vmcall
    ));
    // Registers in the wrong order are not AMD.
    assert!(matches!(
        Instruction::for_vendor(d, b, c),
        Instruction::Vmcall
    ));
};

/// One hypercall entry with instruction `$insn` (`"vmcall"` or `"vmmcall"`): RAX in and
/// out, RDI and RSI in.
macro_rules! enter {
    ($insn:literal, $nr:expr, $arg0:expr, $arg1:expr) => {{
        let ret: u64;
        // SAFETY: VMCALL and VMMCALL transfer control to the monitor (on VT-x and SVM),
        // which validates every argument against this sandbox's memory and only reads
        // guest memory for the calls used here; it returns with all registers but RAX
        // preserved. No `nomem`: the monitor may read buffers we pass, so the compiler
        // must have written them first.
        unsafe {
            core::arch::asm!(
                $insn,
                inlateout("rax") $nr => ret,
                in("rdi") $arg0,
                in("rsi") $arg1,
                options(nostack),
            );
        }
        ret
    }};
}

/// Issues one hypercall and returns RAX. Public for applications that must issue a raw
/// call (the attacker test app); others use the wrappers.
pub fn hypercall(call: Hypercall, arg0: u64, arg1: u64) -> u64 {
    match Instruction::current() {
        Instruction::Vmcall => enter!("vmcall", call.number(), arg0, arg1),
        Instruction::Vmmcall => enter!("vmmcall", call.number(), arg0, arg1),
    }
}

/// Writes `bytes` to the console (the monitor prefixes the sandbox name per line).
/// Returns the monitor's error code if it refused a chunk.
pub fn console_write(bytes: &[u8]) -> Result<(), u64> {
    for chunk in bytes.chunks(nr::CONSOLE_WRITE_MAX as usize) {
        // Guest-virtual equals guest-physical: the boot page tables are an identity map.
        let gpa = chunk.as_ptr() as u64;
        let ret = hypercall(Hypercall::ConsoleWrite, gpa, chunk.len() as u64);
        if ret != nr::OK {
            return Err(ret);
        }
    }
    Ok(())
}

/// The VM exits this sandbox has taken so far (all vCPUs, this call included): the
/// difference of two calls is a phase's exits plus one.
pub fn exit_count() -> u64 {
    hypercall(Hypercall::ExitCount, 0, 0)
}

/// Ends the whole sandbox (every vCPU) with `status`.
pub fn exit(status: i32) -> ! {
    hypercall(Hypercall::Exit, status as u32 as u64, 0);
    // The monitor never resumes a sandbox that exited; if it did, stay put.
    loop {
        core::hint::spin_loop();
    }
}
