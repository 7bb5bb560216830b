//! I/O instruction exits. The sandbox's own device ports pass through the I/O bitmap and
//! never exit; what exits is either a uhyve hypercall port (Hermit's convention: `out dx,
//! eax` with EAX = guest-physical address of a packed parameter block), the 8259 PIC
//! writes Hermit does once (ignored), or a forbidden port, which stops the sandbox.

use crate::vmx::instructions::{self as vmx, reg};
use crate::vmx::vcpu::{Action, FaultKind, Vcpu};
use quest_abi::hypercall::uhyve;
use quest_abi::Runtime;
use quest_monitor_core::exit::IoQualification;
use quest_monitor_core::guest_memory::translate;
use quest_monitor_core::vmcs_fields::natural;

/// The 8259 PIC command/data ports of both controllers.
const PIC_PORTS: [u16; 4] = [0x20, 0x21, 0xA0, 0xA1];
/// Longest buffer one uhyve console hypercall may pass.
const UHYVE_WRITE_MAX: u64 = 1 << 20;

pub fn handle(v: &mut Vcpu) -> Action {
    let q = match IoQualification::decode(super::qualification()) {
        Some(q) if !q.string => q,
        Some(q) => {
            return Action::fault_at(
                FaultKind::ForbiddenPort {
                    port: q.port,
                    input: q.input,
                },
                u64::from(q.port),
            )
        }
        None => return Action::fault(FaultKind::Unexpected(30)),
    };
    let forbidden = Action::fault_at(
        FaultKind::ForbiddenPort {
            port: q.port,
            input: q.input,
        },
        u64::from(q.port),
    );
    let hermit = v.sys.table.sandboxes[v.sandbox].runtime.get() == Runtime::Hermit as u32;
    let params = v.regs.0[reg::RAX] & 0xffff_ffff;
    let action = match (q.port, q.input) {
        (uhyve::SERIAL_BUFFER_WRITE, false) => serial_buffer_write(v, params),
        (uhyve::FILE_WRITE, false) => file_write(v, params),
        (uhyve::SERIAL_WRITE_BYTE, false) => {
            v.console_bytes(&[params as u8]);
            Ok(())
        }
        (uhyve::EXIT, false) => {
            let mut code = [0u8; 4];
            if !v.mem.read(params, &mut code) {
                return forbidden;
            }
            return Action::Exit(i32::from_le_bytes(code));
        }
        (port, false) if hermit && PIC_PORTS.contains(&port) => Ok(()),
        (port, true) if hermit && PIC_PORTS.contains(&port) => {
            // Reads as "all interrupts masked".
            let mask = (1u64 << (u32::from(q.size) * 8)) - 1;
            v.regs.0[reg::RAX] = (v.regs.0[reg::RAX] & !mask) | (0xff & mask);
            Ok(())
        }
        _ => Err(()),
    };
    match action {
        Ok(()) => {
            v.skip_instruction();
            Action::Continue
        }
        Err(()) => forbidden,
    }
}

/// uhyve SerialBufferWrite: `{ buf: GPA u64, len: u64 }`.
fn serial_buffer_write(v: &mut Vcpu, params: u64) -> Result<(), ()> {
    let (Some(buf), Some(len)) = (v.mem.read_u64(params), v.mem.read_u64(params + 8)) else {
        return Err(());
    };
    if len > UHYVE_WRITE_MAX || !v.console_from_guest(buf, len) {
        return Err(());
    }
    Ok(())
}

/// uhyve FileWrite: packed `{ fd: i32, buf: guest-virtual u64, len: u64 }`; fds 1 and
/// 2 go to the console, page by page through the guest's own page tables.
fn file_write(v: &mut Vcpu, params: u64) -> Result<(), ()> {
    let mut raw = [0u8; 20];
    if !v.mem.read(params, &mut raw) {
        return Err(());
    }
    let fd = i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let mut linear = u64::from_le_bytes(raw[4..12].try_into().map_err(|_| ())?);
    let len = u64::from_le_bytes(raw[12..20].try_into().map_err(|_| ())?);
    if !(fd == 1 || fd == 2) || len > UHYVE_WRITE_MAX {
        return Err(());
    }
    // SAFETY: this vCPU's VMCS is current.
    let cr3 = unsafe { vmx::read_natural(natural::GUEST_CR3) };
    let mut left = len;
    while left > 0 {
        let (gpa, in_page) = translate(&v.mem, cr3, linear).map_err(|_| ())?;
        let n = left.min(in_page);
        if !v.console_from_guest(gpa, n) {
            return Err(());
        }
        left -= n;
        linear = linear.checked_add(n).ok_or(())?;
    }
    Ok(())
}
