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
//! - `thread=single`: one host thread runs every vCPU in turn, and a `PAUSE` (which every
//!   spin-wait of the channel library and applications has) hands over to the next vCPU.
//!   With the default (one host thread per vCPU) the vCPUs only move when the host
//!   schedules their threads, while the TSC the applications time themselves with follows
//!   the host's clock: two boots at once on a 2-core CI machine (4 vCPU threads) made
//!   pong's echo of the backpressure burst miss its 5 M-cycle window ("never found the
//!   ring full") and ping then wait for ever. Single-threaded, pingpong and
//!   pingpong-hermit passed with two boots at once (8.7 s and 11 s; 0.8 s for pingpong
//!   multi-threaded on an idle host). Not `-icount`, which would tie the TSC to the
//!   instruction count as Bochs does: with it (shift 4 or 7, sleep on or off) the
//!   monitor's calibration never finished: one core spins without `PAUSE` while the
//!   other sat at the first instruction of its NMI handler (`vmx_host_nmi`) for good.
//!   channels-doorbell still fails here (its ringer pauses 1 M TSC cycles, 0.4 ms of
//!   host time, and the sleeper must spin 200 polls and sleep within it: 19 of 20).

use quest_abi::{DeviceKind, PciId, Table, NO_INDEX};
use std::path::Path;

/// How QEMU runs the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// KVM with the host CPU (needs VT-x on the host).
    Kvm,
    /// Software emulation (AMD SVM with nested paging, no VT-x).
    Tcg,
}

/// The `-accel` of software emulation (see the module documentation).
pub const TCG_ACCEL: &str = "tcg,thread=single";

/// The `-cpu` of software emulation (see the module documentation).
pub const TCG_CPU: &str = "max,vendor=AuthenticAMD";

/// QEMU's exit status when the monitor reports success through isa-debug-exit
/// (`(0x10 << 1) | 1`).
pub const EXIT_SUCCESS: i32 = 33;

/// The PCI functions QEMU emulates that a partition table may name by ID, and QEMU's
/// name for each: a table that gives a sandbox `{ pci = "1234:11e8" }` boots in QEMU with
/// `-device edu` (once per such entry), so the device the manifest names is there.
/// Bochs has none of them (its chipset's own functions are always there).
pub const EMULATED: [(PciId, &str); 1] = [(
    PciId {
        vendor: 0x1234,
        device: 0x11e8,
    },
    "edu",
)];

/// How many of each [`EMULATED`] device a table names (by ID).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmulatedDevices([u8; EMULATED.len()]);

impl EmulatedDevices {
    /// Counts the PCI devices of `table` named by an ID QEMU emulates.
    pub fn of(table: &Table<'_>) -> Self {
        let mut counts = [0u8; EMULATED.len()];
        for d in table.devices {
            if d.kind.get() != DeviceKind::Pci as u32 || d.pci_address.get() != NO_INDEX {
                continue;
            }
            let id = PciId::from_u32(d.pci_id.get());
            if let Some(i) = EMULATED.iter().position(|(e, _)| *e == id) {
                counts[i] = counts[i].saturating_add(1);
            }
        }
        Self(counts)
    }

    /// `-device NAME` for each.
    pub fn args(self) -> Vec<String> {
        EMULATED
            .iter()
            .zip(self.0)
            .flat_map(|((_, name), n)| {
                (0..n).flat_map(move |_| ["-device".to_owned(), (*name).to_owned()])
            })
            .collect()
    }
}

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
        Accel::Tcg => (TCG_ACCEL, TCG_CPU),
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
        assert!(s.contains(
            "-accel tcg,thread=single -cpu max,vendor=AuthenticAMD -smp 2 -m 256M -cdrom /x.iso"
        ));
        assert!(s.contains("-serial file:/s.log"));
        assert!(s.contains("isa-debug-exit,iobase=0xf4,iosize=4"));
        let k = args(Path::new("/x.iso"), 1, 64, Accel::Kvm, Path::new("/s.log")).join(" ");
        assert!(k.contains("-accel kvm -cpu host"));
    }

    #[test]
    fn tables_naming_edu_by_id_get_an_edu_device_each() {
        assert_eq!(EmulatedDevices::default().args(), Vec::<String>::new());
        assert_eq!(
            EmulatedDevices([2]).args().join(" "),
            "-device edu -device edu"
        );
    }
}
