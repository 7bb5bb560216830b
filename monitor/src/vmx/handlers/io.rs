//! I/O instruction exits. The sandbox's own device ports pass through the I/O bitmap and
//! never exit; what exits is either a uhyve hypercall port (Hermit's convention: `out dx,
//! eax` with EAX = guest-physical address of a packed parameter block; served in
//! [`super::uhyve`]), the 8259 PIC accesses Hermit makes once (writes ignored, reads
//! "all masked"; the monitor masked the real PICs at boot), or a forbidden port, which
//! stops the sandbox.

use crate::vmx::instructions::reg;
use crate::vmx::vcpu::{Action, FaultKind, Vcpu};
use quest_abi::Runtime;
use quest_monitor_core::exit::IoQualification;
use quest_monitor_core::uhyve::UhyveCall;

/// The 8259 PIC command/data ports of both controllers.
const PIC_PORTS: [u16; 4] = [0x20, 0x21, 0xA0, 0xA1];

pub fn handle(v: &mut Vcpu) -> Action {
    match IoQualification::decode(super::qualification()) {
        Some(q) => handle_decoded(v, q),
        None => Action::fault(FaultKind::Unexpected(30)),
    }
}

/// An I/O exit, decoded (by either backend).
pub fn handle_decoded(v: &mut Vcpu, q: IoQualification) -> Action {
    let q = match q {
        q if !q.string => q,
        q => {
            return Action::fault_at(
                FaultKind::ForbiddenPort {
                    port: q.port,
                    input: q.input,
                },
                u64::from(q.port),
            )
        }
    };
    let forbidden = Action::fault_at(
        FaultKind::ForbiddenPort {
            port: q.port,
            input: q.input,
        },
        u64::from(q.port),
    );
    let hermit = v.sandbox_view.runtime() == Runtime::Hermit;
    let action = match (q.port, q.input) {
        (port, false) => match UhyveCall::from_port(port) {
            // EAX holds the parameter struct's guest-physical address (below 4 GiB).
            Some(call) => return super::uhyve::handle(v, call, v.regs.0[reg::RAX] & 0xffff_ffff),
            None if hermit && PIC_PORTS.contains(&port) => Ok(()),
            None => Err(()),
        },
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
