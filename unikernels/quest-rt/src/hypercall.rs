//! Quest's own hypercalls (`VMCALL`, number in RAX, arguments in RDI and RSI; see
//! `quest_abi::hypercall`).

use quest_abi::hypercall::{self as nr, Hypercall};

/// Issues one `VMCALL` and returns RAX.
pub(crate) fn vmcall(call: Hypercall, arg0: u64, arg1: u64) -> u64 {
    let ret: u64;
    // SAFETY: VMCALL transfers control to the monitor, which validates every argument
    // against this sandbox's memory and only reads guest memory for the calls used here;
    // it returns with all registers but RAX preserved. No `nomem`: the monitor may read
    // buffers we pass, so the compiler must have written them first.
    unsafe {
        core::arch::asm!(
            "vmcall",
            inlateout("rax") call.number() => ret,
            in("rdi") arg0,
            in("rsi") arg1,
            options(nostack),
        );
    }
    ret
}

/// Writes `bytes` to the console (the monitor prefixes the sandbox name per line).
/// Returns the monitor's error code if it refused a chunk.
pub fn console_write(bytes: &[u8]) -> Result<(), u64> {
    for chunk in bytes.chunks(nr::CONSOLE_WRITE_MAX as usize) {
        // Guest-virtual equals guest-physical: the boot page tables are an identity map.
        let gpa = chunk.as_ptr() as u64;
        let ret = vmcall(Hypercall::ConsoleWrite, gpa, chunk.len() as u64);
        if ret != nr::OK {
            return Err(ret);
        }
    }
    Ok(())
}

/// Ends the whole sandbox (every vCPU) with `status`.
pub fn exit(status: i32) -> ! {
    vmcall(Hypercall::Exit, status as u32 as u64, 0);
    // The monitor never resumes a sandbox that exited; if it did, stay put.
    loop {
        core::hint::spin_loop();
    }
}
