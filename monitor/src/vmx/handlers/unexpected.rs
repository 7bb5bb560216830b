//! Every VM exit the monitor does not expect (INIT, SIPI, task switch, INVD, ...): the
//! sandbox is stopped rather than guessing what the guest meant.

use crate::vmx::vcpu::{Action, FaultKind};

pub fn handle(raw: u32) -> Action {
    Action::fault(FaultKind::Unexpected(raw & 0xffff))
}
