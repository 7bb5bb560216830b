//! Control-register accesses. Only writes that touch bits the monitor owns (VT-x: the
//! CR0/CR4 guest/host masks) exit; such a write would leave long mode, disable paging or
//! caching, or expose VMX, so it stops the sandbox. Anything else is applied.

use super::done;
use crate::exit::{CrAccess, CrAccessKind};
use crate::vcpu_ops::{gpr, Action, FaultKind, VcpuOps};

pub fn handle(v: &mut impl VcpuOps, access: CrAccess) -> Action {
    let fault = Action::fault(FaultKind::ControlRegister(access.cr));
    let Some(owned) = v.owned_cr_bits(access.cr) else {
        return fault;
    };
    if access.kind != CrAccessKind::MovToCr || usize::from(access.gpr) == gpr::RSP {
        return fault;
    }
    let value = v.regs()[usize::from(access.gpr) & 15];
    if (value ^ owned.value) & owned.mask != 0 {
        return Action::fault_at(FaultKind::ControlRegister(access.cr), value);
    }
    let current = v.guest_cr(access.cr);
    v.set_guest_cr(access.cr, (value & !owned.mask) | (current & owned.mask));
    done(v)
}

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeVcpu, CR0_OWNED};
    use super::super::{handle as dispatch, Exit};
    use super::*;

    fn mov_to(cr: u8, gpr: u8) -> Exit {
        Exit::CrAccess(CrAccess {
            cr,
            kind: CrAccessKind::MovToCr,
            gpr,
        })
    }

    #[test]
    fn a_write_that_keeps_the_owned_bits_is_applied() {
        let mut v = FakeVcpu::new();
        v.cr[0] = CR0_OWNED.value; // the launch value
                                   // Set CR0.WP (bit 16), a guest-owned bit, through RBX.
        v.regs[3] = CR0_OWNED.value | (1 << 16);
        assert_eq!(dispatch(&mut v, mov_to(0, 3)), Action::Continue);
        assert_eq!(v.cr[0], CR0_OWNED.value | (1 << 16));
        assert_eq!(v.skipped, 1);
    }

    #[test]
    fn a_write_of_owned_bits_stops_the_sandbox_unapplied() {
        let mut v = FakeVcpu::new();
        v.cr[0] = CR0_OWNED.value;
        // Clearing CR0.PG (bit 31) would leave long mode.
        v.regs[0] = CR0_OWNED.value & !(1 << 31);
        assert_eq!(
            dispatch(&mut v, mov_to(0, 0)),
            Action::fault_at(FaultKind::ControlRegister(0), v.regs[0])
        );
        assert_eq!((v.cr[0], v.skipped), (CR0_OWNED.value, 0));
    }

    #[test]
    fn other_registers_kinds_and_rsp_are_faults() {
        let mut v = FakeVcpu::new();
        for exit in [
            mov_to(3, 0),
            mov_to(8, 0),
            mov_to(15, 0),
            mov_to(0, 4),
            Exit::CrAccess(CrAccess {
                cr: 0,
                kind: CrAccessKind::Clts,
                gpr: 0,
            }),
            Exit::CrAccess(CrAccess {
                cr: 0,
                kind: CrAccessKind::Lmsw(0),
                gpr: 0,
            }),
            Exit::CrAccess(CrAccess {
                cr: 4,
                kind: CrAccessKind::MovFromCr,
                gpr: 1,
            }),
        ] {
            let Exit::CrAccess(a) = exit else {
                unreachable!()
            };
            assert_eq!(
                dispatch(&mut v, exit),
                Action::fault(FaultKind::ControlRegister(a.cr)),
                "{a:?}"
            );
        }
        assert_eq!(v.skipped, 0);
    }
}
