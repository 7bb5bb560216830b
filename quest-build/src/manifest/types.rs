//! The manifest model: what a partition manifest says, with the source span of every
//! value so later stages (validation, planning) can point at the exact text.

pub use super::schema::{Channel, Sandbox, System};
use std::ops::Range;
use std::path::PathBuf;

/// Byte range in the manifest source.
pub type Span = Range<usize>;

/// A value and where it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written (the value's text, or the key's when the value is defaulted).
    pub span: Span,
}

impl<T> Spanned<T> {
    /// Wraps a value with its span.
    pub fn new(value: T, span: Span) -> Self {
        Self { value, span }
    }
}

/// A whole partition manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The manifest file as given (used in diagnostics).
    pub path: PathBuf,
    /// Directory `app` paths are relative to.
    pub base_dir: PathBuf,
    /// The source text (diagnostics quote it).
    pub source: String,
    /// `[system]`.
    pub system: System,
    /// `[[sandbox]]`, in manifest order.
    pub sandboxes: Vec<Sandbox>,
    /// `[[channel]]`, in manifest order.
    pub channels: Vec<Channel>,
}

/// How a channel's reader notices a message (the bound's detection term depends on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReaderMode {
    /// A vCPU of the reader polls the ring without pause.
    Spin,
    /// The reader looks every `poll_period` (give or take `poll_jitter`), e.g. a periodic
    /// task on its own timer.
    Poll,
    /// The reader sleeps in the WAIT hypercall and the writer rings its doorbell.
    Doorbell,
}

/// Where a migrating sandbox's memory goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StandbyMemory {
    /// Nowhere: a migration moves its vCPUs to the standby cores, its RAM stays.
    Same,
    /// A second RAM region the monitor places; a migration copies RAM between the two.
    Separate,
}

/// Whether a migration's pause shows on the migrated sandbox's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DowntimeClock {
    /// Its TSC runs on through the pause (deadlines keep their real-time meaning).
    Elapses,
    /// Its TSC resumes where it stopped: the pause is invisible to its clock.
    Hidden,
}

/// A PC serial port used as the monitor console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    /// COM1, I/O 0x3f8.
    Com1,
    /// COM2, I/O 0x2f8.
    Com2,
    /// COM3, I/O 0x3e8.
    Com3,
    /// COM4, I/O 0x2e8.
    Com4,
}

impl Console {
    /// The UART's I/O base port.
    pub fn port(self) -> u16 {
        match self {
            Self::Com1 => 0x3f8,
            Self::Com2 => 0x2f8,
            Self::Com3 => 0x3e8,
            Self::Com4 => 0x2e8,
        }
    }
    /// The manifest spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Com1 => "com1",
            Self::Com2 => "com2",
            Self::Com3 => "com3",
            Self::Com4 => "com4",
        }
    }
}

/// How a sandbox's application runs (`runtime`, default `hermit`) and what the monitor
/// does when it faults (`on_fault`, default `halt-sandbox`): the partition table's own
/// types, so the manifest and the table cannot disagree.
pub use quest_abi::{OnFault, Runtime};

/// A device passed through to a sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Device {
    /// `{ port = "0x2f8-0x2ff", irq = 3 }`: an inclusive I/O port range and the legacy
    /// IRQ line it raises, if any.
    Ports {
        /// First port.
        first: u16,
        /// Last port (inclusive).
        last: u16,
        /// `irq`: its legacy IRQ line, as written (validation checks the range).
        irq: Option<Spanned<u32>>,
    },
    /// `{ pci = "00:03.0" }` or `{ pci = "1234:11e8", index = 1 }`: a PCI function.
    Pci(PciDevice),
}

/// A PCI function passed through to a sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciDevice {
    /// Which function (`pci`, with `index` for an ID).
    pub select: PciSelector,
    /// `dma` (default `protected`).
    pub dma: Dma,
    /// `if_absent` (default `keep-stopped`).
    pub if_absent: IfAbsent,
}

/// The partition table's names of a PCI function, so the manifest and the table cannot
/// disagree.
pub use quest_abi::{PciAddress, PciId, PciSelector};

/// Whether a PCI function may master the bus (DMA) without an IOMMU confining it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dma {
    /// Only under DMA protection (an IOMMU); until Quest has one, bus mastering is refused.
    Protected,
    /// Allowed without protection: the function can read and write all memory.
    Unprotected,
}

/// What happens to a sandbox whose PCI function is not found at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfAbsent {
    /// The sandbox is not started; the monitor says why.
    KeepStopped,
    /// The sandbox starts without the function (its bus scan does not find it).
    StartWithout,
}

impl Sandbox {
    /// The `app` path resolved against the manifest's directory.
    pub fn app_dir(&self, manifest: &Manifest) -> PathBuf {
        manifest.base_dir.join(&self.app.value)
    }
}
