//! The `WAIT` and `DOORBELL` hypercalls: a vCPU sleeps in the monitor until the peer of
//! one of its sandbox's channels rings.
//!
//! Protocol (per vCPU of a sandbox, flags in its `SandboxState`):
//! - `DOORBELL(i)` resolves directory index `i` to a channel of the caller and its peer
//!   (`quest_monitor_core::doorbell`, from the validated table), then for every vCPU of
//!   the peer stores `doorbell_pending = 1` and, if that vCPU is `waiting`, sends its core
//!   an NMI. A vCPU that is not waiting is not disturbed: its next `WAIT` returns at once.
//! - `WAIT` takes a pending doorbell and returns; otherwise it sets `waiting`, and sleeps
//!   (`sleep::sleep_until_nmi`) until a doorbell is pending or its sandbox is stopping.
//! - No lost wake-up: the waiter stores `waiting` then loads `doorbell_pending`, the ringer
//!   stores `doorbell_pending` then loads `waiting`, all SeqCst, so at least one sees the
//!   other; the NMI that may follow cannot be lost (see `sleep`).
//! - Stopping: the leader's NMIs (`lifecycle::stop_others`) end the sleep the same way,
//!   the waiter sees `stop` and returns, and the run loop parks it.

use super::sleep::sleep_until_nmi;
use super::vcpu::Vcpu;
use crate::sandboxes::{record, state};
use core::sync::atomic::Ordering;
use quest_abi::hypercall::{ERR_INVALID, OK};
use quest_abi::SandboxId;
use quest_monitor_core::doorbell::doorbell_target;

/// `WAIT`: returns `OK` once a doorbell for this vCPU is pending (taking it) or its
/// sandbox is stopping.
pub fn wait(v: &Vcpu) -> u64 {
    let st = state(v.sandbox);
    st.waits.fetch_add(1, Ordering::Relaxed);
    let (Some(pending), Some(waiting)) =
        (st.doorbell_pending.get(v.index), st.waiting.get(v.index))
    else {
        return ERR_INVALID;
    };
    if pending.swap(0, Ordering::SeqCst) != 0 {
        return OK;
    }
    st.sleeps.fetch_add(1, Ordering::Relaxed);
    waiting.store(1, Ordering::SeqCst);
    while pending.swap(0, Ordering::SeqCst) == 0
        && st.stop.load(Ordering::SeqCst) == 0
        && !crate::iommu::fault_signalled(v)
    {
        sleep_until_nmi(pending, &st.stop);
    }
    waiting.store(0, Ordering::SeqCst);
    OK
}

/// `DOORBELL(directory_index)`: wakes the peer of that channel. `ERR_INVALID` when the
/// index names no channel of this sandbox.
pub fn ring(v: &Vcpu, directory_index: u64) -> u64 {
    let table = &v.sys.table;
    let Some(target) = doorbell_target(table.raw().channels, v.sandbox.index(), directory_index)
    else {
        return ERR_INVALID;
    };
    let Some(peer_sandbox) = SandboxId::from_index(target.peer).and_then(|p| table.sandbox(p))
    else {
        return ERR_INVALID;
    };
    state(v.sandbox).doorbells.fetch_add(1, Ordering::Relaxed);
    let peer_record = record(peer_sandbox.id());
    let peer = &peer_record.state;
    let peer_cores = peer_record.placement().cores;
    for (i, &core) in peer_cores.as_slice().iter().enumerate() {
        let (Some(pending), Some(waiting)) = (peer.doorbell_pending.get(i), peer.waiting.get(i))
        else {
            continue;
        };
        pending.store(1, Ordering::SeqCst);
        if waiting.load(Ordering::SeqCst) == 0 {
            continue;
        }
        if let Some(apic_id) = v.sys.apic_id(core) {
            // SAFETY: the core runs a vCPU of the peer sandbox (validated table), whose
            // NMI gate only ends its sleep; NMI exiting is on should it be back in its
            // guest by now (then the exit handler just resumes it).
            unsafe { super::host::send_nmi(apic_id) };
        }
    }
    OK
}
