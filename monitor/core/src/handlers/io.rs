//! I/O instruction exits. The sandbox's own device ports pass through the I/O bitmap and
//! never exit; what exits is either a uhyve hypercall port (Hermit's convention: `out dx,
//! eax` with EAX = guest-physical address of a packed parameter block; served in
//! [`super::uhyve`]), the 8259 PIC accesses Hermit makes once (writes ignored, reads
//! "all masked"; the monitor masked the real PICs at boot), or a forbidden port, which
//! stops the sandbox. String instructions (`ins`/`outs`) always stop it.

use super::done;
use crate::exit::IoQualification;
use crate::uhyve::UhyveCall;
use crate::vcpu_ops::{gpr, Action, FaultKind, VcpuOps};
use quest_abi::Runtime;

/// The 8259 PIC command/data ports of both controllers.
const PIC_PORTS: [u16; 4] = [0x20, 0x21, 0xA0, 0xA1];

pub fn handle(v: &mut impl VcpuOps, q: IoQualification) -> Action {
    let forbidden = Action::fault_at(
        FaultKind::ForbiddenPort {
            port: q.port,
            input: q.input,
        },
        u64::from(q.port),
    );
    if q.string {
        return forbidden;
    }
    let pic = v.runtime() == Runtime::Hermit && PIC_PORTS.contains(&q.port);
    match (q.port, q.input) {
        (port, false) => match UhyveCall::from_port(port) {
            // EAX holds the parameter struct's guest-physical address (below 4 GiB).
            Some(call) => {
                let params = v.regs()[gpr::RAX] & 0xffff_ffff;
                super::uhyve::handle(v, call, params)
            }
            None if pic => done(v),
            None => forbidden,
        },
        (_, true) if pic => {
            // Reads as "all interrupts masked".
            let mask = (1u64 << (u32::from(q.size) * 8)) - 1;
            let rax = &mut v.regs_mut()[gpr::RAX];
            *rax = (*rax & !mask) | (0xff & mask);
            done(v)
        }
        _ => forbidden,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeVcpu;
    use super::super::{handle as dispatch, Exit};
    use super::*;

    fn io(port: u16, input: bool, size: u8) -> Exit {
        Exit::Io(IoQualification {
            size,
            input,
            string: false,
            rep: false,
            port,
        })
    }

    fn forbidden(port: u16, input: bool) -> Action {
        Action::fault_at(FaultKind::ForbiddenPort { port, input }, u64::from(port))
    }

    #[test]
    fn hermit_pic_writes_are_ignored_and_reads_all_masked() {
        let mut v = FakeVcpu::hermit();
        v.regs[gpr::RAX] = 0x1234_5678;
        assert_eq!(dispatch(&mut v, io(0x21, false, 1)), Action::Continue);
        assert_eq!(v.regs[gpr::RAX], 0x1234_5678);
        assert_eq!(dispatch(&mut v, io(0xA1, true, 1)), Action::Continue);
        assert_eq!(v.regs[gpr::RAX], 0x1234_56ff, "only AL changes");
        v.regs[gpr::RAX] = u64::MAX << 8;
        assert_eq!(dispatch(&mut v, io(0x20, true, 2)), Action::Continue);
        assert_eq!(v.regs[gpr::RAX], (u64::MAX << 16) | 0xff, "AX = 0x00ff");
        assert_eq!(v.skipped, 3);
    }

    #[test]
    fn the_pic_is_forbidden_to_a_bare_sandbox() {
        let mut v = FakeVcpu::new();
        assert_eq!(dispatch(&mut v, io(0x21, false, 1)), forbidden(0x21, false));
        assert_eq!(dispatch(&mut v, io(0x20, true, 1)), forbidden(0x20, true));
        assert_eq!(v.skipped, 0);
    }

    #[test]
    fn other_ports_strings_and_uhyve_reads_are_forbidden() {
        let mut v = FakeVcpu::hermit();
        // A port of no device (a real COM1 the sandbox was not given), both directions.
        assert_eq!(
            dispatch(&mut v, io(0x3f8, false, 1)),
            forbidden(0x3f8, false)
        );
        assert_eq!(dispatch(&mut v, io(0x3f8, true, 1)), forbidden(0x3f8, true));
        // A uhyve port read: uhyve calls are writes.
        assert_eq!(dispatch(&mut v, io(0x880, true, 4)), forbidden(0x880, true));
        // `rep outsb` to a uhyve port and `insb` from the PIC.
        for (port, input) in [(0x880, false), (0x21, true)] {
            let q = IoQualification {
                size: 1,
                input,
                string: true,
                rep: true,
                port,
            };
            assert_eq!(dispatch(&mut v, Exit::Io(q)), forbidden(port, input));
        }
        assert_eq!((v.skipped, v.console.len()), (0, 0));
    }

    #[test]
    fn a_uhyve_port_reaches_the_uhyve_handler_with_eax_only() {
        let mut v = FakeVcpu::hermit();
        // Uart: the byte is EAX's low byte; the upper half of RAX is ignored.
        v.regs[gpr::RAX] = 0xffff_ffff_0000_0041;
        assert_eq!(dispatch(&mut v, io(0x800, false, 4)), Action::Continue);
        assert_eq!(v.console, b"A");
    }
}
