//! The EPT of one sandbox, built from its regions in the partition table: RAM with 2 MiB
//! pages (read/write/execute; 4 KiB pages for a sandbox that may move its RAM, whose
//! pre-copy tracks dirty pages at that size, see `crate::precopy`), its channel directory and channel areas with 4 KiB pages
//! and exactly the access the table gives them, its PCI functions' memory BARs
//! (guest-physical == host-physical, read/write, uncached; checked against everything
//! else by `crate::device_windows`), and nothing else.

use crate::device_windows::MemoryWindow;
use crate::ept::{EptBuilder, EptError, EptMemory};
use crate::sandbox_place::SandboxPlacement;
use quest_abi::{GuestPhysAddr, HostPhysAddr, RegionKind, Table, ACCESS_READ, ACCESS_WRITE};

/// What one sandbox's EPT maps, borrowed from where the monitor keeps it: the sandbox's
/// own placement (its record) and the channels' (fixed at boot).
#[derive(Clone, Copy, Debug)]
pub struct HostPlacement<'a> {
    /// The sandbox's RAM and directory page.
    pub sandbox: &'a SandboxPlacement,
    /// Host-physical base of each channel's data area, table order (ack follows data).
    pub channel_hpas: &'a [HostPhysAddr],
    /// Host-physical base of the calibration page(s), mapped read-only (no write, no
    /// execute) at [`quest_abi::layout::CALIBRATION_GPA`] when present.
    pub calibration_hpa: Option<HostPhysAddr>,
    /// The memory windows of its PCI functions' BARs (identity, uncached).
    pub device_memory: &'a [MemoryWindow],
}

/// Why a sandbox's EPT could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxEptError {
    /// The EPT builder failed for region `region` (index in the table's region array).
    Map {
        /// Region index.
        region: usize,
        /// What went wrong.
        error: EptError,
    },
    /// Region `region` has an unknown kind or refers to a channel without a placement.
    Region(usize),
    /// The calibration page could not be mapped.
    Calibration(EptError),
    /// A device's memory window could not be mapped.
    Device(EptError),
}

impl core::fmt::Display for SandboxEptError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Map { region, error } => write!(f, "region {region}: {error}"),
            Self::Region(r) => write!(f, "region {r} has no host placement"),
            Self::Calibration(e) => write!(f, "calibration page: {e}"),
            Self::Device(e) => write!(f, "device registers: {e}"),
        }
    }
}

/// Builds the EPT of sandbox `sandbox` (a valid index into a validated table).
pub fn build_sandbox_ept<M: EptMemory>(
    table: &Table<'_>,
    sandbox: usize,
    place: &HostPlacement<'_>,
    mem: M,
) -> Result<EptBuilder<M>, SandboxEptError> {
    let entry = &table.sandboxes[sandbox];
    let first = entry.regions.first.get() as usize;
    let moves_ram = entry.max_downtime_ns.get() != 0
        && entry.migration_flags.get() & quest_abi::MIGRATION_SEPARATE_MEMORY != 0;
    let mut ept = EptBuilder::new(mem).map_err(|error| SandboxEptError::Map {
        region: first,
        error,
    })?;
    for (pos, r) in table.sandbox_regions(sandbox).iter().enumerate() {
        let idx = first + pos;
        let kind = RegionKind::from_u32(r.kind.get()).ok_or(SandboxEptError::Region(idx))?;
        let (hpa, large) = match kind {
            RegionKind::Ram => (Some(place.sandbox.ram_hpa), !moves_ram),
            RegionKind::Directory => (place.sandbox.directory_hpa, false),
            RegionKind::ChannelData | RegionKind::ChannelAck => {
                let c = r.channel.get() as usize;
                let base = *place
                    .channel_hpas
                    .get(c)
                    .ok_or(SandboxEptError::Region(idx))?;
                let channel = table.channels.get(c).ok_or(SandboxEptError::Region(idx))?;
                let off = if kind == RegionKind::ChannelAck {
                    channel.data_size.get()
                } else {
                    0
                };
                let hpa = base.checked_add(off).ok_or(SandboxEptError::Region(idx))?;
                (Some(hpa), false)
            }
        };
        let hpa = hpa
            .filter(|&hpa| hpa != HostPhysAddr::ZERO)
            .ok_or(SandboxEptError::Region(idx))?;
        let gpa = GuestPhysAddr::new(r.gpa.get());
        ept.map_range(gpa, hpa, r.size.get(), r.access.get(), large)
            .map_err(|error| SandboxEptError::Map { region: idx, error })?;
    }
    if let Some(hpa) = place.calibration_hpa {
        use quest_abi::layout::{CALIBRATION_GPA, CALIBRATION_SIZE};
        ept.map_range(
            GuestPhysAddr::new(CALIBRATION_GPA),
            hpa,
            CALIBRATION_SIZE,
            quest_abi::ACCESS_READ,
            false,
        )
        .map_err(SandboxEptError::Calibration)?;
    }
    for w in place.device_memory {
        // Identity: the BAR stays where firmware put it. The builder refuses a page
        // mapped already (RAM, channels), though `device_windows::check` ruled it out.
        let (gpa, hpa) = (GuestPhysAddr::new(w.base), HostPhysAddr::new(w.base));
        ept.map_range_uncached(gpa, hpa, w.size, ACCESS_READ | ACCESS_WRITE)
            .map_err(SandboxEptError::Device)?;
    }
    Ok(ept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ept::test_memory::VecMemory;
    use crate::ept::{PAGE_2M, PAGE_4K};
    use quest_abi::layout::{DIRECTORY_GPA, DIRECTORY_SIZE};
    use quest_abi::testing::{sample_table, MIB};
    use quest_abi::{validate, ACCESS_EXEC, ACCESS_READ, ACCESS_WRITE};

    fn g(a: u64) -> GuestPhysAddr {
        GuestPhysAddr::new(a)
    }

    fn h(a: u64) -> HostPhysAddr {
        HostPhysAddr::new(a)
    }

    /// RAM at 1 GiB, the directory at 2 GiB.
    fn sample_placement() -> SandboxPlacement {
        SandboxPlacement {
            ram_hpa: h(0x4000_0000),
            directory_hpa: Some(h(0x8000_0000)),
            ..SandboxPlacement::UNPLACED
        }
    }

    /// The EPT of `sandbox` of the sample table, with its RAM at 1 GiB, the directory at
    /// 2 GiB and the channels at `channel_hpas`.
    fn sample_ept(
        sandbox: usize,
        channel_hpas: &[HostPhysAddr],
    ) -> Result<EptBuilder<VecMemory>, SandboxEptError> {
        let bytes = sample_table();
        let table = validate(&bytes).unwrap();
        let place = HostPlacement {
            sandbox: &sample_placement(),
            channel_hpas,
            calibration_hpa: None,
            device_memory: &[],
        };
        build_sandbox_ept(&table, sandbox, &place, VecMemory::new(32))
    }

    #[test]
    fn maps_exactly_the_regions_with_their_access() {
        // Sandbox 1 is the reader of channel 0.
        let ept = sample_ept(1, &[h(0x9000_0000)]).unwrap();
        let rwx = ACCESS_READ | ACCESS_WRITE | ACCESS_EXEC;
        let ram = ept.translate(g(8 * MIB - 1)).unwrap();
        assert_eq!((ram.hpa, ram.access), (h(0x4000_0000 + 8 * MIB - 1), rwx));
        assert_eq!(ram.page_size, PAGE_2M);
        assert!(ept.translate(g(8 * MIB)).is_none(), "RAM ends at ram_size");
        let dir = ept.translate(g(DIRECTORY_GPA + 8)).unwrap();
        assert_eq!((dir.hpa, dir.access), (h(0x8000_0008), ACCESS_READ));
        assert_eq!(dir.page_size, PAGE_4K);
        let data_gpa = DIRECTORY_GPA + DIRECTORY_SIZE;
        let data = ept.translate(g(data_gpa)).unwrap();
        assert_eq!((data.hpa, data.access), (h(0x9000_0000), ACCESS_READ));
        let ack = ept.translate(g(data_gpa + 64 * 1024)).unwrap();
        assert_eq!(
            (ack.hpa, ack.access),
            (h(0x9000_0000 + 64 * 1024), ACCESS_READ | ACCESS_WRITE)
        );
        assert!(ept.translate(g(data_gpa + 64 * 1024 + PAGE_4K)).is_none());
        assert!(ept.translate(g(0x100_0000_0000)).is_none());
    }

    #[test]
    fn writer_side_gets_the_opposite_channel_access() {
        let ept = sample_ept(0, &[h(0x9000_0000)]).unwrap();
        let data_gpa = DIRECTORY_GPA + DIRECTORY_SIZE;
        assert_eq!(
            ept.translate(g(data_gpa)).unwrap().access,
            ACCESS_READ | ACCESS_WRITE
        );
        assert_eq!(
            ept.translate(g(data_gpa + 64 * 1024)).unwrap().access,
            ACCESS_READ
        );
    }

    #[test]
    fn the_calibration_page_is_read_only_in_every_sandbox() {
        use quest_abi::layout::{CALIBRATION_GPA, CALIBRATION_SIZE};
        let bytes = sample_table();
        let table = validate(&bytes).unwrap();
        let chan = [h(0x9000_0000)];
        for sandbox in [0, 1] {
            let place = HostPlacement {
                sandbox: &sample_placement(),
                channel_hpas: &chan,
                calibration_hpa: Some(h(0xa000_0000)),
                device_memory: &[],
            };
            let ept = build_sandbox_ept(&table, sandbox, &place, VecMemory::new(32)).unwrap();
            let last = CALIBRATION_GPA + CALIBRATION_SIZE - 1;
            let t = ept.translate(g(last)).unwrap();
            assert_eq!(
                (t.hpa, t.access),
                (h(0xa000_0000 + CALIBRATION_SIZE - 1), ACCESS_READ)
            );
            assert!(ept
                .translate(g(CALIBRATION_GPA + CALIBRATION_SIZE))
                .is_none());
        }
    }

    #[test]
    fn device_windows_are_identity_uncached_and_never_over_ram() {
        let bytes = sample_table();
        let table = validate(&bytes).unwrap();
        let chan = [h(0x9000_0000)];
        let windows = [
            MemoryWindow {
                base: 0xfebf_0000,
                size: PAGE_4K,
            },
            MemoryWindow {
                base: 0x8_0000_0000,
                size: PAGE_2M,
            },
        ];
        let place = HostPlacement {
            sandbox: &sample_placement(),
            channel_hpas: &chan,
            calibration_hpa: None,
            device_memory: &windows,
        };
        let ept = build_sandbox_ept(&table, 1, &place, VecMemory::new(32)).unwrap();
        let t = ept.translate(g(0xfebf_0ffc)).unwrap();
        assert_eq!(
            (t.hpa, t.access, t.uncached),
            (h(0xfebf_0ffc), ACCESS_READ | ACCESS_WRITE, true)
        );
        assert_eq!(ept.translate(g(0x8_0010_0000)).unwrap().page_size, PAGE_2M);
        assert!(ept.translate(g(0xfebf_1000)).is_none());
        assert!(!ept.translate(g(0)).unwrap().uncached);
        // Over RAM: refused by the builder too.
        let over = [MemoryWindow {
            base: 0x10_0000,
            size: PAGE_4K,
        }];
        let place = HostPlacement {
            device_memory: &over,
            ..place
        };
        assert!(matches!(
            build_sandbox_ept(&table, 1, &place, VecMemory::new(32)),
            Err(SandboxEptError::Device(EptError::AlreadyMapped { .. }))
        ));
    }

    #[test]
    fn missing_placement_is_an_error() {
        assert!(matches!(
            sample_ept(0, &[]),
            Err(SandboxEptError::Region(_))
        ));
    }
}
