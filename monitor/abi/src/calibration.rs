//! The calibration page: platform constants the monitor measures at boot, on the real
//! cores, before any sandbox runs, and maps read-only (EPT: read, no write, no execute)
//! into every sandbox at [`crate::layout::CALIBRATION_GPA`].
//!
//! Layout (little-endian, [`CALIBRATION_SIZE`] bytes): a [`CalibrationHeader`], then
//! `channel_count` [`ChannelCalibration`] entries indexed by the channel's index in the
//! partition table (the `channel` field of its [`crate::directory::DirectoryEntry`], which
//! both endpoints see). All costs are TSC cycles; a [`Cost`] is the median and the
//! maximum over the trials.
//!
//! Converting a writer's TSC stamp `t_w` into the reader's clock: `t_w + tsc_offset`,
//! correct within `± offset_uncertainty` cycles (the offset is reader minus writer, from
//! the best of several round-trip exchanges, so the delivery latency cancels out).
//!
//! The monitor writes the page with [`encode`]; guests and tests read it with
//! [`CalibrationView::new`], which validates everything it hands out.

use crate::table::MAX_CHANNELS;
use core::fmt;
use zerocopy::little_endian::{I64, U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// [`CalibrationHeader::magic`].
pub const CALIBRATION_MAGIC: [u8; 8] = *b"QUESTCAL";
/// [`CalibrationHeader::version`] this crate writes and reads.
pub const CALIBRATION_VERSION: u32 = 1;
/// Size of the calibration area (two 4 KiB pages).
pub const CALIBRATION_SIZE: usize = 0x2000;
/// [`ChannelCalibration::flags`]: the entry holds measured values.
pub const CHANNEL_MEASURED: u16 = 1;

/// A measured cost in TSC cycles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Median over the trials.
    pub median: u64,
    /// Maximum over the trials.
    pub max: u64,
}

/// [`Cost`] as stored in the page.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct RawCost {
    /// Median, cycles.
    pub median: U64,
    /// Maximum, cycles.
    pub max: U64,
}

impl From<Cost> for RawCost {
    fn from(c: Cost) -> Self {
        Self {
            median: c.median.into(),
            max: c.max.into(),
        }
    }
}

impl From<RawCost> for Cost {
    fn from(c: RawCost) -> Self {
        Self {
            median: c.median.get(),
            max: c.max.get(),
        }
    }
}

/// Start of the calibration page (128 bytes).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct CalibrationHeader {
    /// [`CALIBRATION_MAGIC`].
    pub magic: [u8; 8],
    /// [`CALIBRATION_VERSION`].
    pub version: U32,
    /// TSC frequency in kHz (the same value the launch patches carry).
    pub tsc_khz: U32,
    /// Trials behind each median/max.
    pub trials: U32,
    /// [`ChannelCalibration`] entries that follow (= the table's channels).
    pub channel_count: U32,
    /// Copying 1 KiB, source and destination not in any cache.
    pub copy_cold_per_kib: RawCost,
    /// Copying 1 KiB, source and destination already cached.
    pub copy_warm_per_kib: RawCost,
    /// A VM exit and the VM entry back (a guest `cpuid` until the guest runs again).
    pub vm_exit_entry: RawCost,
    /// An NMI IPI until the target core's handler has run, seen back on the sender.
    pub ipi: RawCost,
    /// A core halted as a vCPU sleeping in `WAIT` is: from the doorbell NMI until its
    /// first store after waking, seen back on the sender (includes the IPI).
    pub wake: RawCost,
    /// TSC cycles the whole calibration took at boot.
    pub calibration_cycles: U64,
    /// Zero.
    pub reserved: [u8; 16],
}

/// One channel's constants, between the cores of its writer and its reader sandbox
/// (24 bytes). With several core pairs, the worst round trip and an offset interval
/// that covers every pair.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ChannelCalibration {
    /// Cache-line round trip between a writer core and a reader core: median, cycles.
    pub line_median: U32,
    /// Cache-line round trip: maximum, cycles.
    pub line_max: U32,
    /// Reader's TSC minus writer's TSC at the same instant, cycles.
    pub tsc_offset: I64,
    /// The offset is right within plus or minus this many cycles.
    pub offset_uncertainty: U32,
    /// [`CHANNEL_MEASURED`] when the entry holds measurements.
    pub flags: U16,
    /// Distinct (writer core, reader core) pairs behind the entry.
    pub pairs: U16,
}

/// Most channel entries the page holds.
pub const MAX_CALIBRATED_CHANNELS: usize = (CALIBRATION_SIZE
    - core::mem::size_of::<CalibrationHeader>())
    / core::mem::size_of::<ChannelCalibration>();

const _: () = {
    assert!(core::mem::size_of::<CalibrationHeader>() == 128);
    assert!(core::mem::size_of::<ChannelCalibration>() == 24);
    assert!(MAX_CALIBRATED_CHANNELS >= MAX_CHANNELS);
};

/// Everything the page says apart from the channels (what [`encode`] takes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Constants {
    /// TSC frequency, kHz.
    pub tsc_khz: u32,
    /// Trials behind each cost.
    pub trials: u32,
    /// Copy cost per KiB, cold.
    pub copy_cold_per_kib: Cost,
    /// Copy cost per KiB, warm.
    pub copy_warm_per_kib: Cost,
    /// VM exit + entry.
    pub vm_exit_entry: Cost,
    /// IPI delivery.
    pub ipi: Cost,
    /// WAIT wake-up.
    pub wake: Cost,
    /// Cycles the calibration took.
    pub calibration_cycles: u64,
}

/// What calibration found for one channel's worst core pair, as its boot-log line
/// (`quest: calibration: channel ...`) says it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PairCalibration {
    /// Writer-side core of the worst pair.
    pub writer_core: u32,
    /// Reader-side core of the worst pair.
    pub reader_core: u32,
    /// Cache-line round trip.
    pub line: Cost,
    /// Reader's TSC minus writer's TSC (covering every pair of the channel).
    pub tsc_offset: i64,
    /// Plus or minus.
    pub uncertainty: u64,
}

/// One channel's constants (what [`encode`] takes and [`CalibrationView::channel`] gives).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelConstants {
    /// Cache-line round trip between its writer's and reader's cores.
    pub line_round_trip: Cost,
    /// Reader's TSC minus writer's TSC, cycles.
    pub tsc_offset: i64,
    /// Plus or minus this many cycles.
    pub offset_uncertainty: u64,
    /// Core pairs measured.
    pub pairs: u32,
}

/// Why a calibration page cannot be written or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CalibrationError {
    /// The buffer is smaller than [`CALIBRATION_SIZE`].
    Short(usize),
    /// The magic is wrong (no calibration page here).
    Magic,
    /// A version this crate does not know.
    Version(u32),
    /// TSC frequency 0.
    NoTscFrequency,
    /// More channels than the page holds.
    Channels(usize),
    /// A cost whose maximum is below its median (`what` names it).
    Cost(&'static str),
    /// Channel entry `index` is inconsistent (unknown flags, max below median, reserved).
    Channel(usize),
}

impl fmt::Display for CalibrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Short(n) => write!(f, "calibration page: {n} bytes, needs {CALIBRATION_SIZE}"),
            Self::Magic => f.write_str("calibration page: bad magic"),
            Self::Version(v) => write!(
                f,
                "calibration page: version {v}, expected {CALIBRATION_VERSION}"
            ),
            Self::NoTscFrequency => f.write_str("calibration page: TSC frequency 0"),
            Self::Channels(n) => write!(
                f,
                "calibration page: {n} channels, at most {MAX_CALIBRATED_CHANNELS}"
            ),
            Self::Cost(what) => write!(f, "calibration page: {what}: max below median"),
            Self::Channel(i) => write!(f, "calibration page: channel {i} is inconsistent"),
        }
    }
}

/// Writes the page into `out` (at least [`CALIBRATION_SIZE`] bytes; the rest of the
/// area is zeroed). Values that do not fit a field saturate.
pub fn encode(
    constants: &Constants,
    channels: &[ChannelConstants],
    out: &mut [u8],
) -> Result<(), CalibrationError> {
    if out.len() < CALIBRATION_SIZE {
        return Err(CalibrationError::Short(out.len()));
    }
    if channels.len() > MAX_CALIBRATED_CHANNELS {
        return Err(CalibrationError::Channels(channels.len()));
    }
    let out = &mut out[..CALIBRATION_SIZE];
    out.fill(0);
    let header = CalibrationHeader {
        magic: CALIBRATION_MAGIC,
        version: CALIBRATION_VERSION.into(),
        tsc_khz: constants.tsc_khz.into(),
        trials: constants.trials.into(),
        channel_count: (channels.len() as u32).into(),
        copy_cold_per_kib: constants.copy_cold_per_kib.into(),
        copy_warm_per_kib: constants.copy_warm_per_kib.into(),
        vm_exit_entry: constants.vm_exit_entry.into(),
        ipi: constants.ipi.into(),
        wake: constants.wake.into(),
        calibration_cycles: constants.calibration_cycles.into(),
        reserved: [0; 16],
    };
    let (head, rest) = out.split_at_mut(core::mem::size_of::<CalibrationHeader>());
    head.copy_from_slice(header.as_bytes());
    let sat = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    for (c, slot) in channels
        .iter()
        .zip(rest.chunks_exact_mut(core::mem::size_of::<ChannelCalibration>()))
    {
        let entry = ChannelCalibration {
            line_median: sat(c.line_round_trip.median).into(),
            line_max: sat(c.line_round_trip.max).into(),
            tsc_offset: c.tsc_offset.into(),
            offset_uncertainty: sat(c.offset_uncertainty).into(),
            flags: CHANNEL_MEASURED.into(),
            pairs: (u16::try_from(c.pairs).unwrap_or(u16::MAX)).into(),
        };
        slot.copy_from_slice(entry.as_bytes());
    }
    Ok(())
}

/// A validated calibration page.
#[derive(Clone, Copy, Debug)]
pub struct CalibrationView<'a> {
    header: &'a CalibrationHeader,
    channels: &'a [ChannelCalibration],
}

impl<'a> CalibrationView<'a> {
    /// Checks `bytes` (the page as mapped: at least [`CALIBRATION_SIZE`] bytes) and
    /// views it.
    pub fn new(bytes: &'a [u8]) -> Result<Self, CalibrationError> {
        if bytes.len() < CALIBRATION_SIZE {
            return Err(CalibrationError::Short(bytes.len()));
        }
        let (header, rest) = CalibrationHeader::ref_from_prefix(&bytes[..CALIBRATION_SIZE])
            .map_err(|_| CalibrationError::Short(bytes.len()))?;
        if header.magic != CALIBRATION_MAGIC {
            return Err(CalibrationError::Magic);
        }
        if header.version.get() != CALIBRATION_VERSION {
            return Err(CalibrationError::Version(header.version.get()));
        }
        if header.tsc_khz.get() == 0 {
            return Err(CalibrationError::NoTscFrequency);
        }
        let count = header.channel_count.get() as usize;
        if count > MAX_CALIBRATED_CHANNELS {
            return Err(CalibrationError::Channels(count));
        }
        let costs = [
            ("copy cold", header.copy_cold_per_kib),
            ("copy warm", header.copy_warm_per_kib),
            ("vm exit+entry", header.vm_exit_entry),
            ("ipi", header.ipi),
            ("wake-up", header.wake),
        ];
        for (what, c) in costs {
            if c.max.get() < c.median.get() {
                return Err(CalibrationError::Cost(what));
            }
        }
        let (channels, _) = <[ChannelCalibration]>::ref_from_prefix_with_elems(rest, count)
            .map_err(|_| CalibrationError::Channels(count))?;
        for (i, c) in channels.iter().enumerate() {
            let measured = c.flags.get() == CHANNEL_MEASURED;
            if !measured || c.line_max.get() < c.line_median.get() {
                return Err(CalibrationError::Channel(i));
            }
        }
        Ok(Self { header, channels })
    }

    /// The raw header.
    pub fn header(&self) -> &'a CalibrationHeader {
        self.header
    }

    /// The page's version.
    pub fn version(&self) -> u32 {
        self.header.version.get()
    }

    /// Everything but the channels.
    pub fn constants(&self) -> Constants {
        let h = self.header;
        Constants {
            tsc_khz: h.tsc_khz.get(),
            trials: h.trials.get(),
            copy_cold_per_kib: h.copy_cold_per_kib.into(),
            copy_warm_per_kib: h.copy_warm_per_kib.into(),
            vm_exit_entry: h.vm_exit_entry.into(),
            ipi: h.ipi.into(),
            wake: h.wake.into(),
            calibration_cycles: h.calibration_cycles.get(),
        }
    }

    /// Channels the page describes.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Channel `index` (its index in the partition table), if the page has it.
    pub fn channel(&self, index: usize) -> Option<ChannelConstants> {
        let c = self.channels.get(index)?;
        Some(ChannelConstants {
            line_round_trip: Cost {
                median: c.line_median.get().into(),
                max: c.line_max.get().into(),
            },
            tsc_offset: c.tsc_offset.get(),
            offset_uncertainty: c.offset_uncertainty.get().into(),
            pairs: c.pairs.get().into(),
        })
    }
}

impl ChannelConstants {
    /// A writer's TSC stamp converted into the reader's clock (saturating).
    pub fn writer_to_reader(&self, writer_tsc: u64) -> u64 {
        writer_tsc.saturating_add_signed(self.tsc_offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Constants, [ChannelConstants; 2]) {
        let c = Constants {
            tsc_khz: 2_000_000,
            trials: 32,
            copy_cold_per_kib: Cost {
                median: 900,
                max: 1200,
            },
            copy_warm_per_kib: Cost {
                median: 60,
                max: 80,
            },
            vm_exit_entry: Cost {
                median: 1100,
                max: 1500,
            },
            ipi: Cost {
                median: 2000,
                max: 2600,
            },
            wake: Cost {
                median: 4000,
                max: 9000,
            },
            calibration_cycles: 1_234_567,
        };
        let ch = [
            ChannelConstants {
                line_round_trip: Cost {
                    median: 180,
                    max: 400,
                },
                tsc_offset: -12,
                offset_uncertainty: 90,
                pairs: 1,
            },
            ChannelConstants {
                line_round_trip: Cost {
                    median: 200,
                    max: 200,
                },
                tsc_offset: 7,
                offset_uncertainty: 100,
                pairs: 2,
            },
        ];
        (c, ch)
    }

    #[test]
    fn the_page_round_trips() {
        let (c, ch) = sample();
        let mut page = [0xffu8; CALIBRATION_SIZE];
        encode(&c, &ch, &mut page).unwrap();
        assert_eq!(&page[..8], b"QUESTCAL");
        let view = CalibrationView::new(&page).unwrap();
        assert_eq!(view.version(), CALIBRATION_VERSION);
        assert_eq!(view.constants(), c);
        assert_eq!(view.channel_count(), 2);
        assert_eq!(view.channel(0), Some(ch[0]));
        assert_eq!(view.channel(1), Some(ch[1]));
        assert_eq!(view.channel(2), None);
        // Everything past the last entry is zero.
        assert!(page[128 + 2 * 24..].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_writer_stamp_converts_with_the_offset() {
        let (_, ch) = sample();
        assert_eq!(ch[0].writer_to_reader(1000), 988);
        assert_eq!(ch[1].writer_to_reader(1000), 1007);
        assert_eq!(ch[0].writer_to_reader(3), 0, "saturates");
    }

    #[test]
    fn bad_pages_are_refused() {
        let (c, ch) = sample();
        let mut page = [0u8; CALIBRATION_SIZE];
        assert_eq!(
            CalibrationView::new(&page[..100]).unwrap_err(),
            CalibrationError::Short(100)
        );
        assert_eq!(
            CalibrationView::new(&page).unwrap_err(),
            CalibrationError::Magic
        );
        encode(&c, &ch, &mut page).unwrap();
        let good = page;
        page[8] = 2;
        assert_eq!(
            CalibrationView::new(&page).unwrap_err(),
            CalibrationError::Version(2)
        );
        page = good;
        page[12..16].fill(0);
        assert_eq!(
            CalibrationView::new(&page).unwrap_err(),
            CalibrationError::NoTscFrequency
        );
        page = good;
        page[20..24].copy_from_slice(&10_000u32.to_le_bytes());
        assert!(matches!(
            CalibrationView::new(&page),
            Err(CalibrationError::Channels(_))
        ));
        page = good;
        // The cold copy's max below its median.
        page[32..40].fill(0);
        assert_eq!(
            CalibrationView::new(&page).unwrap_err(),
            CalibrationError::Cost("copy cold")
        );
        page = good;
        // Channel 1 not marked measured.
        page[128 + 24 + 20] = 0;
        assert_eq!(
            CalibrationView::new(&page).unwrap_err(),
            CalibrationError::Channel(1)
        );
        page = good;
        // Channel 0's line max (bytes 4..8 of its entry) below its median.
        page[128 + 4..128 + 8].fill(0);
        assert_eq!(
            CalibrationView::new(&page).unwrap_err(),
            CalibrationError::Channel(0)
        );
        let mut small = [0u8; 10];
        assert_eq!(
            encode(&c, &ch, &mut small),
            Err(CalibrationError::Short(10))
        );
        let many = [ChannelConstants::default(); MAX_CALIBRATED_CHANNELS + 1];
        assert!(matches!(
            encode(&c, &many, &mut page),
            Err(CalibrationError::Channels(_))
        ));
    }

    #[test]
    fn large_values_saturate() {
        let (c, _) = sample();
        let ch = [ChannelConstants {
            line_round_trip: Cost {
                median: u64::MAX,
                max: u64::MAX,
            },
            tsc_offset: i64::MIN,
            offset_uncertainty: u64::MAX,
            pairs: 70_000,
        }];
        let mut page = [0u8; CALIBRATION_SIZE];
        encode(&c, &ch, &mut page).unwrap();
        let got = CalibrationView::new(&page).unwrap().channel(0).unwrap();
        assert_eq!(got.line_round_trip.max, u64::from(u32::MAX));
        assert_eq!(got.offset_uncertainty, u64::from(u32::MAX));
        assert_eq!((got.tsc_offset, got.pairs), (i64::MIN, u32::from(u16::MAX)));
    }
}
