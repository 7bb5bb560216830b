//! Booting an ISO in QEMU: with KVM on a host that offers VT-x or SVM to guests, or with
//! software emulation (TCG), which emulates AMD SVM with nested paging but no VT-x: the
//! monitor's SVM backend runs there.
//!
//! Why each TCG setting (measured with QEMU 7.2):
//! - `-cpu max`: every feature TCG emulates, SVM and NPT included (`qemu64` has no SVM).
//!   TCG 7.2 lacks x2APIC, NRIP save and SHA-NI (it warns "TCG doesn't support requested
//!   feature" for each), so the SVM backend must do without them there.
//! - `vendor=AuthenticAMD`: guests choose VMMCALL over VMCALL by the CPUID vendor
//!   (quest-rt's `hypercall`), so the vendor must match the SVM the CPU offers; stated,
//!   not left to `max`'s default.

use std::path::Path;

/// How QEMU runs the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// KVM with the host CPU (needs VT-x on the host).
    Kvm,
    /// Software emulation (AMD SVM with nested paging, no VT-x).
    Tcg,
}

/// The `-cpu` of software emulation (see the module documentation).
pub const TCG_CPU: &str = "max,vendor=AuthenticAMD";

/// QEMU's exit status when the monitor reports success through isa-debug-exit
/// (`(0x10 << 1) | 1`).
pub const EXIT_SUCCESS: i32 = 33;

/// Arguments for `qemu-system-x86_64` booting `iso` with COM1 to `serial_log`.
pub fn args(
    iso: &Path,
    cores: u32,
    memory_mib: u64,
    accel: Accel,
    serial_log: &Path,
) -> Vec<String> {
    let (accel, cpu) = match accel {
        Accel::Kvm => ("kvm", "host"),
        Accel::Tcg => ("tcg", TCG_CPU),
    };
    [
        "-accel",
        accel,
        "-cpu",
        cpu,
        "-smp",
        &cores.to_string(),
        "-m",
        &format!("{memory_mib}M"),
        "-cdrom",
        &iso.display().to_string(),
        "-boot",
        "d",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        &format!("file:{}", serial_log.display()),
        "-no-reboot",
        "-nic",
        "none",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn software_emulation_uses_tcg_and_the_exit_device() {
        let a = args(Path::new("/x.iso"), 2, 256, Accel::Tcg, Path::new("/s.log"));
        let s = a.join(" ");
        assert!(s.contains("-accel tcg -cpu max,vendor=AuthenticAMD -smp 2 -m 256M -cdrom /x.iso"));
        assert!(s.contains("-serial file:/s.log"));
        assert!(s.contains("isa-debug-exit,iobase=0xf4,iosize=4"));
        let k = args(Path::new("/x.iso"), 1, 64, Accel::Kvm, Path::new("/s.log")).join(" ");
        assert!(k.contains("-accel kvm -cpu host"));
    }
}
