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
//! - `-rtc clock=vm`: the CMOS clock (its date, and its periodic interrupt that
//!   irq-rtc.toml routes to a sandbox) follows the same instruction-counted clock instead
//!   of the host's. With the host's clock, a loaded host made QEMU deliver a periodic
//!   interrupt whose register C showed no periodic flag (irq-rtc's probe counted it as
//!   stray, about one boot in four with two boots at once on 2 cores); the date starts at
//!   the host's time either way.
//! - Still not dedicated cores: a vCPU keeps the thread until it pauses, halts or exits
//!   while the clock runs for all, so `quest-build run --check-bounds` of bounds.toml
//!   fails here (measurements in `quest-build/tests/boot_bounds.rs`).

use quest_abi::{DeviceEntry, DeviceKind, PciId, Table, NO_INDEX};
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
/// `-device edu,dma_mask=0xffffffff` (once per such entry), so the device the manifest
/// names is there. Bochs has none of them (its chipset's own functions are always
/// there). edu's DMA mask is widened from QEMU's default 28 bits to the 32 bits a real
/// device's DMA engine reaches: with 28, edu clamps every DMA address to 256 MiB, so
/// it could not write the interrupt range 0xFEExxxxx (the attack `dma-intr.toml` makes).
pub const EMULATED: [(PciId, &str); 1] = [(
    PciId {
        vendor: 0x1234,
        device: 0x11e8,
    },
    "edu,dma_mask=0xffffffff",
)];

/// The machine and IOMMU of a table that names any PCI device (see [`EmulatedDevices`]):
/// - `-machine q35`: QEMU's Intel IOMMU exists only on the Q35 chipset, and Q35 has an
///   ACPI MCFG table, so the monitor reaches configuration space through ECAM there
///   (i440FX, QEMU's default and what Bochs has, has neither).
/// - `-device intel-iommu`: a VT-d unit announced by an ACPI DMAR table, which the
///   monitor programs so that each sandbox's devices reach only its memory (its default
///   39-bit address width gives 3-level tables; caching mode stays off).
/// - `intremap=on`: interrupt remapping (ECAP.IR, with queued invalidation, and the DMAR's
///   INTR_REMAP flag and I/O APIC scope): the monitor turns it on and makes every device
///   MSI and I/O APIC line remappable, so that a device cannot send an interrupt the
///   monitor did not set up. With software emulation no `kernel-irqchip=split` is needed:
///   that is for KVM's in-kernel I/O APIC, which QEMU refuses to combine with remapping;
///   under TCG the I/O APIC is QEMU's own and its messages go through the IOMMU's
///   remapping like a device's. Extended interrupt mode (`eim`) stays off by default
///   under TCG (xAPIC destinations, 8 bits, which the monitor uses). QEMU 7.2 does not
///   enforce all of it (the monitor's `iommu::vtd` and `boot_iommu.rs` say what it does).
///
/// It goes before the emulated devices: a PCI device created before the IOMMU would do
/// its DMA around it.
pub const PCI_PLATFORM: [&str; 4] = ["-machine", "q35", "-device", "intel-iommu,intremap=on"];

/// The IOMMU QEMU's Q35 gets for a table that names PCI devices (`quest-build run
/// --iommu`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Iommu {
    /// Intel VT-d, announced by an ACPI DMAR table ([`PCI_PLATFORM`]).
    #[default]
    Intel,
    /// AMD-Vi, announced by an ACPI IVRS table ([`AMD_PLATFORM`]).
    Amd,
    /// None: Q35 alone ([`NO_IOMMU_PLATFORM`]), so the monitor runs without DMA
    /// protection and refuses bus mastering unless a device says `dma = "unprotected"`.
    None,
}

/// [`PCI_PLATFORM`] with AMD-Vi: `-device amd-iommu` (QEMU's AMD IOMMU, Q35 only) with
/// `intremap=on`: interrupt remapping (the IVRS then names the I/O APIC as a special
/// device, 00:14.0, and QEMU's I/O APIC sends its messages through the IOMMU with that
/// device ID), which the monitor turns on: each protected device's MSI and each routed
/// I/O APIC line goes through a table entry it wrote. As for VT-d, software emulation
/// needs no `kernel-irqchip=split` (that is KVM's in-kernel I/O APIC, which QEMU does
/// not combine with remapping); the 32-bit entry format (no `xtsup`) gives 8-bit
/// destinations. QEMU 7.2's amd-iommu translates and refuses DMA but never writes its
/// event log (the monitor's `iommu::amdvi` says what it does instead).
pub const AMD_PLATFORM: [&str; 4] = ["-machine", "q35", "-device", "amd-iommu,intremap=on"];

/// [`PCI_PLATFORM`] without an IOMMU.
pub const NO_IOMMU_PLATFORM: [&str; 2] = ["-machine", "q35"];

impl Iommu {
    /// The machine and IOMMU arguments.
    pub fn platform(self) -> &'static [&'static str] {
        match self {
            Self::Intel => &PCI_PLATFORM,
            Self::Amd => &AMD_PLATFORM,
            Self::None => &NO_IOMMU_PLATFORM,
        }
    }
}

/// What QEMU adds for the PCI devices a table names: the platform of its [`Iommu`] when
/// it names any, and how many of each [`EMULATED`] device it names by ID.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmulatedDevices {
    counts: [u8; EMULATED.len()],
    any_pci: bool,
    iommu: Iommu,
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
        Self {
            counts,
            any_pci,
            iommu: Iommu::default(),
        }
    }

    /// The same devices behind `iommu` instead.
    pub fn with_iommu(self, iommu: Iommu) -> Self {
        Self { iommu, ..self }
    }

    /// Whether the table names a PCI device (then QEMU gets Q35 and the IOMMU).
    pub fn any_pci(self) -> bool {
        self.any_pci
    }

    /// The IOMMU's platform if needed, then `-device NAME` for each emulated device.
    pub fn args(self) -> Vec<String> {
        let platform = if self.any_pci {
            self.iommu.platform()
        } else {
            &[]
        };
        platform
            .iter()
            .map(|s| (*s).to_owned())
            .chain(EMULATED.iter().zip(self.counts).flat_map(|((_, name), n)| {
                (0..n).flat_map(move |_| ["-device".to_owned(), (*name).to_owned()])
            }))
            .collect()
    }
}

/// COM2's I/O ports on a PC (the 16550 at 0x2f8, IRQ 3).
pub const COM2_PORTS: (u16, u16) = (0x2f8, 0x2ff);

/// Whether a table with `devices` gives a sandbox COM2's ports (a port range covering
/// 0x2f8-0x2ff): then QEMU gets a second serial port ([`com2_args`]) for it to drive.
pub fn names_com2(devices: &[DeviceEntry]) -> bool {
    devices.iter().any(|d| {
        d.kind.get() == DeviceKind::IoPorts as u32
            && d.first.get() <= u64::from(COM2_PORTS.0)
            && u64::from(COM2_PORTS.1) <= d.last.get()
    })
}

/// The longest Unix socket path (`sun_path` holds 108 bytes with the final NUL).
pub const SOCKET_PATH_MAX: usize = 107;

/// Arguments that give QEMU a COM2 on the Unix socket `socket`, for a table that passes
/// COM2 to a sandbox ([`names_com2`]). Why each setting:
/// - `-chardev socket,path=...`: a Unix socket is a file, so a client outside QEMU (the
///   boot test, `socat - UNIX-CONNECT:PATH`) reaches it without a TCP port opened on the
///   machine, and also from outside a network namespace.
/// - `server=on`: QEMU listens and the client connects whenever it is ready; the test
///   connects once the sandbox says its UART is programmed (bytes sent before that
///   would be lost: enabling the 16550's FIFOs clears them).
/// - `wait=off`: the boot does not wait for a client; the monitor and the other
///   sandboxes run as usual, and the owner echoes only what arrives. What the guest sends
///   while no client is connected is dropped; what a client sends is read from the
///   socket only as fast as the guest empties its receive FIFO, so nothing is lost on
///   the way in.
/// - `-serial chardev:com2`: a second `-serial` is COM2 (0x2f8, IRQ 3) on the PC's ISA
///   bus; [`args`]'s `-serial file:` stays COM1, the monitor's console.
pub fn com2_args(socket: &Path) -> Vec<String> {
    vec![
        "-chardev".into(),
        format!(
            "socket,id=com2,path={},server=on,wait=off",
            socket.display()
        ),
        "-serial".into(),
        "chardev:com2".into(),
    ]
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
            "-rtc",
            "clock=vm",
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
    fn com2_is_a_listening_unix_socket_behind_the_second_serial_port() {
        let a = com2_args(Path::new("/r/com2.sock")).join(" ");
        assert_eq!(
            a,
            "-chardev socket,id=com2,path=/r/com2.sock,server=on,wait=off -serial chardev:com2"
        );
    }

    #[test]
    fn only_a_table_giving_all_of_com2s_ports_gets_a_com2() {
        let with = |first: u64, last: u64| {
            names_com2(&[DeviceEntry {
                sandbox: 0.into(),
                kind: (DeviceKind::IoPorts as u32).into(),
                first: first.into(),
                last: last.into(),
                irq: 3.into(),
                flags: 0.into(),
                pci_address: NO_INDEX.into(),
                pci_id: 0.into(),
                pci_index: 0.into(),
                reserved: 0.into(),
            }])
        };
        assert!(with(0x2f8, 0x2ff));
        assert!(!with(0x3e8, 0x3ef), "COM3");
        assert!(!with(0x2f8, 0x2fb), "half of COM2");
        assert!(!names_com2(&[]));
    }

    #[test]
    fn tables_naming_pci_get_q35_and_the_iommu_first_then_an_edu_each() {
        assert_eq!(EmulatedDevices::default().args(), Vec::<String>::new());
        let two = EmulatedDevices {
            counts: [2],
            any_pci: true,
            iommu: Iommu::Intel,
        };
        assert_eq!(
            two.args().join(" "),
            "-machine q35 -device intel-iommu,intremap=on -device edu,dma_mask=0xffffffff -device edu,dma_mask=0xffffffff"
        );
        let by_address = EmulatedDevices {
            counts: [0],
            any_pci: true,
            iommu: Iommu::default(),
        };
        assert_eq!(
            by_address.args().join(" "),
            "-machine q35 -device intel-iommu,intremap=on"
        );
    }

    #[test]
    fn the_iommu_is_chosen_and_only_for_tables_naming_pci() {
        let edu = EmulatedDevices {
            counts: [1],
            any_pci: true,
            iommu: Iommu::Intel,
        };
        assert_eq!(
            edu.with_iommu(Iommu::Amd).args().join(" "),
            "-machine q35 -device amd-iommu,intremap=on -device edu,dma_mask=0xffffffff"
        );
        assert_eq!(
            edu.with_iommu(Iommu::None).args().join(" "),
            "-machine q35 -device edu,dma_mask=0xffffffff"
        );
        assert!(edu.any_pci());
        let none = EmulatedDevices::default().with_iommu(Iommu::Amd);
        assert!(!none.any_pci());
        assert_eq!(none.args(), Vec::<String>::new());
    }
}
