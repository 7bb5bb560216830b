//! VMCALL/VMMCALL: Quest's own hypercalls (`quest_abi::hypercall`): number in RAX,
//! arguments in RDI, RSI, RDX, result in RAX. Bad arguments get `ERR_INVALID`, unknown
//! numbers `ERR_UNKNOWN`; neither stops the sandbox. `Wait`, `Doorbell` and `Migrate` are
//! monitor services ([`VcpuOps`]), which check their own arguments.

use super::{console_from_guest, done};
use crate::vcpu_ops::{gpr, Action, VcpuOps};
use quest_abi::hypercall::{Hypercall, CONSOLE_WRITE_MAX, ERR_INVALID, ERR_UNKNOWN, OK};
use quest_abi::GuestPhysAddr;

pub fn handle(v: &mut impl VcpuOps) -> Action {
    let number = v.regs()[gpr::RAX];
    let (a0, a1) = (v.regs()[gpr::RDI], v.regs()[gpr::RSI]);
    let result = match Hypercall::from_number(number) {
        Some(Hypercall::ConsoleWrite) => {
            if a1 <= CONSOLE_WRITE_MAX && console_from_guest(v, GuestPhysAddr::new(a0), a1) {
                OK
            } else {
                ERR_INVALID
            }
        }
        Some(Hypercall::Exit) => return Action::Exit(a0 as u32 as i32),
        Some(Hypercall::Wait) => v.wait(),
        Some(Hypercall::Doorbell) => v.doorbell(a0),
        Some(Hypercall::Migrate) => v.migrate(a0),
        Some(Hypercall::ExitCount) => v.exit_count(),
        None => ERR_UNKNOWN,
    };
    v.regs_mut()[gpr::RAX] = result;
    done(v)
}

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeVcpu, Service};
    use super::super::{handle as dispatch, Exit};
    use super::*;

    fn call(v: &mut FakeVcpu, h: Hypercall, a0: u64, a1: u64) -> Action {
        v.regs[gpr::RAX] = h as u64;
        v.regs[gpr::RDI] = a0;
        v.regs[gpr::RSI] = a1;
        dispatch(v, Exit::Hypercall)
    }

    #[test]
    fn console_write_prints_what_lies_in_ram() {
        let mut v = FakeVcpu::new();
        v.ram[0x2000..0x2006].copy_from_slice(b"hello\n");
        assert_eq!(
            call(&mut v, Hypercall::ConsoleWrite, 0x2000, 6),
            Action::Continue
        );
        assert_eq!((v.regs[gpr::RAX], v.skipped), (OK, 1));
        assert_eq!(v.console, b"hello\n");
    }

    #[test]
    fn console_write_outside_ram_or_too_long_is_refused_not_fatal() {
        let mut v = FakeVcpu::new();
        let ram = v.ram.len() as u64;
        for (gpa, len) in [
            (ram - 4, 8),
            (ram, 1),
            (u64::MAX - 2, 8),
            (0, CONSOLE_WRITE_MAX + 1),
        ] {
            assert_eq!(
                call(&mut v, Hypercall::ConsoleWrite, gpa, len),
                Action::Continue
            );
            assert_eq!(v.regs[gpr::RAX], ERR_INVALID, "{gpa:#x}+{len}");
        }
        assert!(v.console.is_empty());
        assert_eq!(v.skipped, 4, "the guest goes on");
    }

    #[test]
    fn exit_ends_the_sandbox_with_the_low_32_bits() {
        let mut v = FakeVcpu::new();
        assert_eq!(
            call(&mut v, Hypercall::Exit, 0xffff_ffff_ffff_fffe, 0),
            Action::Exit(-2)
        );
        assert_eq!(
            call(&mut v, Hypercall::Exit, 7 | (1 << 40), 0),
            Action::Exit(7)
        );
        assert_eq!(v.skipped, 0);
    }

    #[test]
    fn services_get_their_argument_and_return_their_result() {
        let mut v = FakeVcpu::new();
        v.service_result = 0x55;
        for (h, service) in [
            (Hypercall::Wait, Service::Wait),
            (Hypercall::Doorbell, Service::Doorbell(9)),
            (Hypercall::Migrate, Service::Migrate(9)),
        ] {
            assert_eq!(call(&mut v, h, 9, 0), Action::Continue);
            assert_eq!(v.regs[gpr::RAX], 0x55);
            assert_eq!(v.services.last(), Some(&service));
        }
        v.service_result = 1234;
        assert_eq!(call(&mut v, Hypercall::ExitCount, 0, 0), Action::Continue);
        assert_eq!(
            (v.regs[gpr::RAX], v.skipped),
            (1234, 4),
            "the count, and on"
        );
    }

    #[test]
    fn unknown_numbers_are_answered_not_fatal() {
        let mut v = FakeVcpu::new();
        for number in [0xdead, u64::MAX, 1 << 32] {
            v.regs[gpr::RAX] = number;
            assert_eq!(dispatch(&mut v, Exit::Hypercall), Action::Continue);
            assert_eq!(v.regs[gpr::RAX], ERR_UNKNOWN, "{number:#x}");
        }
        assert!(v.services.is_empty());
    }
}
