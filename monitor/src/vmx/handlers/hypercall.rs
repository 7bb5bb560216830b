//! VMCALL: Quest's own hypercalls (`quest_abi::hypercall`): number in RAX, arguments in
//! RDI, RSI, RDX, result in RAX. Bad arguments get `ERR_INVALID`, unknown numbers
//! `ERR_UNKNOWN`; neither stops the sandbox. `WAIT` and `DOORBELL` are in `vmx::doorbell`.

use crate::vmx::doorbell;
use crate::vmx::instructions::reg;
use crate::vmx::vcpu::{Action, Vcpu};
use quest_abi::hypercall::{
    CONSOLE_WRITE, CONSOLE_WRITE_MAX, DOORBELL, ERR_INVALID, ERR_UNKNOWN, EXIT, OK, WAIT,
};

pub fn handle(v: &mut Vcpu) -> Action {
    let number = v.regs.0[reg::RAX];
    let (a0, a1) = (v.regs.0[reg::RDI], v.regs.0[reg::RSI]);
    let result = match number {
        CONSOLE_WRITE => {
            if a1 <= CONSOLE_WRITE_MAX && v.console_from_guest(a0, a1) {
                OK
            } else {
                ERR_INVALID
            }
        }
        EXIT => return Action::Exit(a0 as u32 as i32),
        WAIT => doorbell::wait(v),
        DOORBELL => doorbell::ring(v, a0),
        _ => ERR_UNKNOWN,
    };
    v.regs.0[reg::RAX] = result;
    v.skip_instruction();
    Action::Continue
}
