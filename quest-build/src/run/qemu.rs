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
//!   spin-wait of the monitor, the channel library and the applications has) hands over
//!   to the next vCPU. With the default (one host thread per vCPU) the vCPUs only move
//!   when the host schedules their threads: two boots at once on a 2-core CI machine (4
//!   vCPU threads) made pong's echo of the backpressure burst miss its 5 M-cycle window
//!   ("never found the ring full") and ping then wait for ever.
//! - `-icount shift=7,sleep=off`: the TSC (and every timer) follows the instructions the
//!   vCPUs executed, 128 ns each (Bochs here: 100 ns), instead of the host's clock, and
//!   the clock skips ahead while every vCPU halts. The channel applications time
//!   themselves with the TSC; with the host's clock their windows depended on the host's
//!   load and on QEMU's speed, with this they do not: two boots of pingpong printed
//!   identical consoles, launch TSCs and round trips included, and the monitor's
//!   calibration gives exactly 128x Bochs' instruction counts (copy 17 248 = 135 x 128
//!   cycles per KiB, max = median). It is faster too, since a paused application's
//!   time passes in fewer instructions: the SVM boot tests in QEMU took 14.6 s instead of
//!   49.4 s, bounds.toml 3.7 s instead of 31 s (2-core host). A smaller shift is slower
//!   (shift 0: bounds.toml's 16 s of ticks did not finish in 300 s). This needs the PAUSE
//!   in every wait: before the monitor's calibration had it, icount (shift 4 or 7)
//!   stalled there for good.
//! - Still not dedicated cores: a vCPU keeps the thread until it pauses, halts or exits
//!   while the clock runs for all, so `quest-build run --check-bounds` of bounds.toml
//!   fails here (measurements in `quest-build/tests/boot_bounds.rs`).

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

/// The `-icount` of software emulation (see the module documentation).
pub const TCG_ICOUNT: &str = "shift=7,sleep=off";

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

/// The machine and IOMMU of a table that names any PCI device (see [`EmulatedDevices`]):
/// - `-machine q35`: QEMU's Intel IOMMU exists only on the Q35 chipset, and Q35 has an
///   ACPI MCFG table, so the monitor reaches configuration space through ECAM there
///   (i440FX, QEMU's default and what Bochs has, has neither).
/// - `-device intel-iommu`: a VT-d unit announced by an ACPI DMAR table, which the
///   monitor programs so that each sandbox's devices reach only its memory (its default
///   39-bit address width gives 3-level tables; caching mode stays off).
/// - `intremap=off`: no interrupt remapping, which the monitor does not program: device
///   MSIs and the unit's own fault event (an NMI) keep the compatibility format the
///   monitor writes (with it on, QEMU would announce remapping in the DMAR flags and
///   expect it to be set up).
///
/// It goes before the emulated devices: a PCI device created before the IOMMU would do
/// its DMA around it.
pub const PCI_PLATFORM: [&str; 4] = ["-machine", "q35", "-device", "intel-iommu,intremap=off"];

/// What QEMU adds for the PCI devices a table names: [`PCI_PLATFORM`] when it names any,
/// and how many of each [`EMULATED`] device it names by ID.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmulatedDevices {
    counts: [u8; EMULATED.len()],
    any_pci: bool,
}

impl EmulatedDevices {
    /// What `table` needs.
    pub fn of(table: &Table<'_>) -> Self {
        let mut counts = [0u8; EMULATED.len()];
        let mut any_pci = false;
        for d in table.devices {
            if d.kind.get() != DeviceKind::Pci as u32 {
                continue;
            }
            any_pci = true;
            if d.pci_address.get() != NO_INDEX {
                continue;
            }
            let id = PciId::from_u32(d.pci_id.get());
            if let Some(i) = EMULATED.iter().position(|(e, _)| *e == id) {
                counts[i] = counts[i].saturating_add(1);
            }
        }
        Self { counts, any_pci }
    }

    /// [`PCI_PLATFORM`] if needed, then `-device NAME` for each emulated device.
    pub fn args(self) -> Vec<String> {
        let platform = if self.any_pci { &PCI_PLATFORM[..] } else { &[] };
        platform
            .iter()
            .map(|s| (*s).to_owned())
            .chain(EMULATED.iter().zip(self.counts).flat_map(|((_, name), n)| {
                (0..n).flat_map(move |_| ["-device".to_owned(), (*name).to_owned()])
            }))
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
    let (accel, icount, cpu) = match accel {
        Accel::Kvm => ("kvm", None, "host"),
        Accel::Tcg => (TCG_ACCEL, Some(TCG_ICOUNT), TCG_CPU),
    };
    let icount = icount.map(|i| ["-icount", i]);
    ["-accel", accel]
        .into_iter()
        .chain(icount.into_iter().flatten())
        .chain([
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
        ])
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
            "-accel tcg,thread=single -icount shift=7,sleep=off -cpu max,vendor=AuthenticAMD -smp 2 -m 256M -cdrom /x.iso"
        ));
        assert!(s.contains("-serial file:/s.log"));
        assert!(s.contains("isa-debug-exit,iobase=0xf4,iosize=4"));
        let k = args(Path::new("/x.iso"), 1, 64, Accel::Kvm, Path::new("/s.log")).join(" ");
        assert!(k.contains("-accel kvm -cpu host") && !k.contains("-icount"));
    }

    #[test]
    fn tables_naming_pci_get_q35_and_the_iommu_first_then_an_edu_each() {
        assert_eq!(EmulatedDevices::default().args(), Vec::<String>::new());
        let two = EmulatedDevices {
            counts: [2],
            any_pci: true,
        };
        assert_eq!(
            two.args().join(" "),
            "-machine q35 -device intel-iommu,intremap=off -device edu -device edu"
        );
        let by_address = EmulatedDevices {
            counts: [0],
            any_pci: true,
        };
        assert_eq!(
            by_address.args().join(" "),
            "-machine q35 -device intel-iommu,intremap=off"
        );
    }
}
