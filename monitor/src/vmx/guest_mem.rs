//! Checked access to a sandbox's RAM from the monitor. Every guest-physical address and
//! length is checked against the sandbox's own RAM (checked arithmetic) before the
//! host-physical address `ram_hpa + gpa` is touched.

use crate::system::System;
use quest_abi::{GuestPhysAddr, HostPhysAddr, SandboxId};
use quest_monitor_core::guest_memory::{ram_range, GuestRam};

/// One sandbox's RAM as the monitor sees it (identity-mapped host memory).
#[derive(Clone, Copy, Debug)]
pub struct GuestMem {
    sandbox: SandboxId,
    ram_hpa: HostPhysAddr,
    ram_size: u64,
}

impl GuestMem {
    /// Sandbox `s`'s RAM at its current placement (its record's; a vCPU takes this again
    /// whenever it (re)launches, since the placement may have changed while it was parked).
    pub fn of(sys: &System, s: SandboxId) -> Self {
        Self {
            sandbox: s,
            ram_hpa: crate::sandboxes::record(s).placement().ram_hpa,
            ram_size: sys.table.sandbox(s).map_or(0, |sb| sb.ram_size()),
        }
    }

    /// Copies `buf.len()` bytes from guest-physical `gpa`; false if outside RAM.
    pub fn read(&self, gpa: GuestPhysAddr, buf: &mut [u8]) -> bool {
        let Some(hpa) = self.host_address(gpa, buf.len()) else {
            return false;
        };
        // SAFETY: the range lies inside the sandbox's placed, identity-mapped RAM (checked
        // above). Its vCPUs may write it concurrently; a raw byte copy of such memory is
        // what the monitor wants (a snapshot), and `buf` is not aliased.
        unsafe { core::ptr::copy_nonoverlapping(hpa as *const u8, buf.as_mut_ptr(), buf.len()) };
        true
    }

    /// Writes `bytes` at guest-physical `gpa`; false if outside RAM.
    pub fn write(&self, gpa: GuestPhysAddr, bytes: &[u8]) -> bool {
        let Some(hpa) = self.host_address(gpa, bytes.len()) else {
            return false;
        };
        // SAFETY: inside the sandbox's own RAM (checked above); monitor memory and other
        // sandboxes are never in that range.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), hpa as *mut u8, bytes.len()) };
        // A migration's pre-copy must see this write (the CPU's dirty flags do not).
        super::migrate::monitor_wrote(self.sandbox, gpa.as_u64(), bytes.len() as u64);
        true
    }

    /// Where `len` bytes at `gpa` lie in host memory; `None` unless all of them lie
    /// inside the sandbox's RAM.
    fn host_address(&self, gpa: GuestPhysAddr, len: usize) -> Option<u64> {
        ram_range(gpa.as_u64(), len as u64, self.ram_size)?;
        self.ram_hpa
            .checked_add(gpa.as_u64())
            .map(HostPhysAddr::as_u64)
    }

    /// Reads a little-endian u64; `None` if outside RAM.
    pub fn read_u64(&self, gpa: GuestPhysAddr) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b).then(|| u64::from_le_bytes(b))
    }
}

impl GuestRam for GuestMem {
    fn ram_size(&self) -> u64 {
        self.ram_size
    }
    fn read_u64(&self, gpa: u64) -> u64 {
        GuestMem::read_u64(self, GuestPhysAddr::new(gpa)).unwrap_or(0)
    }
}
