//! Hermit's uhyve hypercalls (`out dx, eax`: port = call, EAX = guest-physical address of
//! its packed parameter struct; decoded by `quest_monitor_core::uhyve`).
//!
//! - SerialBufferWrite and the single-byte Uart: kernel log bytes to the console.
//! - FileWrite to fd 1 or 2: std's stdout/stderr. The buffer is guest-virtual: it is
//!   translated page by page through the guest's own page tables (CR3), every table entry
//!   and every byte checked against the sandbox's RAM. Writes to other descriptors (there
//!   are none: opening a file always fails) are dropped.
//! - Exit: the sandbox ends with that status (the lifecycle stops its other vCPUs).
//! - Host file access and the obsolete calls: "failed" written into the struct's result
//!   field where it has one, and one console line saying so; the guest goes on.
//!
//! A parameter struct or buffer outside the sandbox's RAM is a fault: the guest passed an
//! address no correct kernel would.

use crate::vmx::vcpu::{Action, FaultKind, Vcpu};
use quest_abi::GuestPhysAddr;
use quest_monitor_core::guest_memory::translate;
use quest_monitor_core::uhyve::{self, UhyveCall, Unsupported};

/// Longest parameter struct of a call Quest reads or writes.
const PARAMS_MAX: usize = 32;

/// Serves uhyve call `call` whose parameter struct is at guest-physical `params`.
pub fn handle(v: &mut Vcpu, call: UhyveCall, params: u64) -> Action {
    let len = call.params_len().min(PARAMS_MAX);
    let mut raw = [0u8; PARAMS_MAX];
    if len > 0 && !v.mem.read(GuestPhysAddr::new(params), &mut raw[..len]) {
        return bad(
            params,
            "its parameter struct lies outside the sandbox's RAM",
        );
    }
    let raw = &raw[..len];
    let done = match call {
        UhyveCall::SerialBufferWrite => serial_buffer_write(v, raw),
        UhyveCall::FileWrite => file_write(v, raw),
        UhyveCall::SerialWriteByte => {
            v.console_bytes(&[params as u8]);
            Ok(())
        }
        UhyveCall::Exit => match uhyve::exit_code(raw) {
            Some(code) => return Action::Exit(code),
            None => Err("short Exit struct"),
        },
        UhyveCall::Unsupported(u) => unsupported(v, u, params),
    };
    match done {
        Ok(()) => {
            v.skip_instruction();
            Action::Continue
        }
        Err(why) => bad(params, why),
    }
}

fn bad(params: u64, why: &'static str) -> Action {
    Action::fault_at(FaultKind::BadHypercall(why), params)
}

fn serial_buffer_write(v: &mut Vcpu, raw: &[u8]) -> Result<(), &'static str> {
    let p = uhyve::serial_buffer(raw).ok_or("short SerialBufferWrite struct")?;
    if !v.console_from_guest(GuestPhysAddr::new(p.buf), p.len) {
        return Err("SerialBufferWrite buffer outside the sandbox's RAM");
    }
    Ok(())
}

fn file_write(v: &mut Vcpu, raw: &[u8]) -> Result<(), &'static str> {
    let p = uhyve::file_write(raw).ok_or("short FileWrite struct")?;
    if !p.is_console() {
        return Ok(());
    }
    let cr3 = v.guest_cr3();
    let (mut linear, mut left) = (p.buf, p.len);
    while left > 0 {
        let (gpa, in_page) =
            translate(&v.mem, cr3, linear).map_err(|_| "FileWrite buffer is not mapped to RAM")?;
        let n = left.min(in_page);
        if !v.console_from_guest(GuestPhysAddr::new(gpa), n) {
            return Err("FileWrite buffer outside the sandbox's RAM");
        }
        left -= n;
        linear = linear
            .checked_add(n)
            .ok_or("FileWrite buffer wraps around")?;
    }
    Ok(())
}

fn unsupported(v: &mut Vcpu, u: Unsupported, params: u64) -> Result<(), &'static str> {
    if let Some(result) = u.error_result() {
        // Inside the struct, which was read above, so inside RAM.
        let at = GuestPhysAddr::new(params).checked_add(result.offset);
        if !at.is_some_and(|at| v.mem.write(at, result.bytes)) {
            return Err("its parameter struct lies outside the sandbox's RAM");
        }
    }
    crate::println!(
        "quest: sandbox '{}' core {}: uhyve {} is not available in Quest (no host files); it failed",
        v.name,
        v.core,
        u.name()
    );
    Ok(())
}
