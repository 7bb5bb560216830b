//! VMCALL: Quest's own hypercalls (`quest_abi::hypercall`): number in RAX, arguments in
//! RDI, RSI, RDX, result in RAX. Bad arguments get `ERR_INVALID`, unknown numbers
//! `ERR_UNKNOWN`; neither stops the sandbox. `Wait` and `Doorbell` are in `vmx::doorbell`,
//! `Migrate` in `vmx::migrate`.

use crate::vmx::instructions::reg;
use crate::vmx::vcpu::{Action, Vcpu};
use crate::vmx::{doorbell, migrate};
use quest_abi::hypercall::{Hypercall, CONSOLE_WRITE_MAX, ERR_INVALID, ERR_UNKNOWN, OK};
use quest_abi::GuestPhysAddr;

pub fn handle(v: &mut Vcpu) -> Action {
    let number = v.regs.0[reg::RAX];
    let (a0, a1) = (v.regs.0[reg::RDI], v.regs.0[reg::RSI]);
    let result = match Hypercall::from_number(number) {
        Some(Hypercall::ConsoleWrite) => {
            if a1 <= CONSOLE_WRITE_MAX && v.console_from_guest(GuestPhysAddr::new(a0), a1) {
                OK
            } else {
                ERR_INVALID
            }
        }
        Some(Hypercall::Exit) => return Action::Exit(a0 as u32 as i32),
        Some(Hypercall::Wait) => doorbell::wait(v),
        Some(Hypercall::Doorbell) => doorbell::ring(v, a0),
        Some(Hypercall::Migrate) => migrate::request(v, a0),
        None => ERR_UNKNOWN,
    };
    v.regs.0[reg::RAX] = result;
    v.skip_instruction();
    Action::Continue
}
