//! Guest bytes to the console, read from the sandbox's RAM.

use crate::guest_memory::ram_range;
use crate::vcpu_ops::VcpuOps;
use quest_abi::GuestPhysAddr;

/// Copies `len` bytes from guest-physical `gpa` to the console in chunks; false when
/// any part lies outside the sandbox's RAM (then nothing is printed).
pub fn console_from_guest(v: &mut impl VcpuOps, gpa: GuestPhysAddr, len: u64) -> bool {
    if ram_range(gpa.as_u64(), len, v.ram_size()).is_none() {
        return false;
    }
    let mut buf = [0u8; 256];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        // Inside RAM (checked above), so no overflow.
        let Some(at) = gpa.checked_add(done) else {
            return false;
        };
        if !v.read_guest(at, &mut buf[..n]) {
            return false;
        }
        v.console_bytes(&buf[..n]);
        done += n as u64;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeVcpu;
    use super::*;

    #[test]
    fn copies_in_chunks_and_refuses_anything_outside_ram() {
        let mut v = FakeVcpu::new();
        let text: Vec<u8> = (0..600).map(|i| b'a' + (i % 26) as u8).collect();
        v.ram[0x100..0x100 + 600].copy_from_slice(&text);
        assert!(console_from_guest(&mut v, GuestPhysAddr::new(0x100), 600));
        assert_eq!(v.console, text);
        assert_eq!(v.console_writes, 3, "256-byte chunks");
        let ram = v.ram.len() as u64;
        for (gpa, len) in [(ram - 1, 2), (ram, 1), (u64::MAX, 2), (0, u64::MAX)] {
            assert!(!console_from_guest(&mut v, GuestPhysAddr::new(gpa), len));
        }
        assert_eq!(v.console.len(), 600, "nothing more printed");
        assert!(
            console_from_guest(&mut v, GuestPhysAddr::new(ram), 0),
            "empty at the end"
        );
    }
}
