//! Tests of `amdvi::domain`: the tables are walked the way the spec says a unit walks
//! them (device table entry, then Next Level by Next Level), and the way QEMU 7.2's
//! amd-iommu does (`amdvi_page_walk`), not read back through the builder.

use super::super::regs::{dte_translated, DTE_IR, DTE_IW};
use super::*;
use crate::device_windows::MemoryWindow;
use crate::ept::test_memory::VecMemory;
use crate::ept::{LARGE, RWX};
use crate::iommu_tables::EPT_WB;
use crate::sandbox_ept::build_sandbox_ept;
use crate::sandbox_place::SandboxPlacement;
use proptest::prelude::*;
use quest_abi::layout::{CALIBRATION_GPA, DIRECTORY_GPA, DIRECTORY_SIZE};
use quest_abi::testing::{sample_table, DATA_SIZE, MIB};
use quest_abi::{validate, ACCESS_READ, ACCESS_WRITE};

const RAM_HPA: u64 = 0x4000_0000;
const DIR_HPA: u64 = 0x8000_0000;
const CHAN_HPA: u64 = 0x9000_0000;
/// edu's device ID (00:03.0).
const EDU: u16 = 0x18;

fn placement() -> SandboxPlacement {
    SandboxPlacement {
        ram_hpa: HostPhysAddr::new(RAM_HPA),
        directory_hpa: Some(HostPhysAddr::new(DIR_HPA)),
        ..SandboxPlacement::UNPLACED
    }
}

fn place<'a>(
    p: &'a SandboxPlacement,
    chan: &'a [HostPhysAddr],
    bar: &'a [MemoryWindow],
) -> HostPlacement<'a> {
    HostPlacement {
        sandbox: p,
        channel_hpas: chan,
        calibration_hpa: Some(HostPhysAddr::new(0xa000_0000)),
        device_memory: bar,
    }
}

/// Sandbox `sandbox` of the sample table as a domain with `levels` (domain ID 1), given
/// device ID [`EDU`] in a one-page device table: the memory and the table.
fn setup(
    sandbox: usize,
    levels: Levels,
    frames: usize,
) -> Result<(VecMemory, DeviceTable), DomainError> {
    let bytes = sample_table();
    let table = validate(&bytes).unwrap();
    let chan = [HostPhysAddr::new(CHAN_HPA)];
    let bar = [MemoryWindow {
        base: 0xfea0_0000,
        size: 0x10_0000,
    }];
    let p = placement();
    let domain = build_domain(
        &table,
        sandbox,
        &place(&p, &chan, &bar),
        VecMemory::new(frames),
        levels,
    )?;
    assert_eq!(domain.levels(), levels);
    let root = domain.root();
    let mut mem = domain.into_memory();
    let base = mem
        .alloc_table()
        .ok_or(DomainError::Tables(BuildError::OutOfFrames))?;
    let dt = DeviceTable::new(&mut mem, base, 1);
    dt.assign(
        &mut mem,
        EDU,
        dte_translated(
            root.as_u64(),
            levels,
            1,
            super::super::regs::DTE_INTERRUPTS_BLOCKED,
        ),
    )?;
    Ok((mem, dt))
}

/// What the spec says a unit does with a request of device `id` to `iova`: the
/// host-physical address, or `Err` (target abort; an IO_PAGE_FAULT for a translated
/// device).
fn walk(mem: &VecMemory, dt: &DeviceTable, id: u16, iova: u64, write: bool) -> Result<u64, ()> {
    let dte = dt.entry(mem, id).ok_or(())?;
    assert_eq!(dte[0] & 3, 3, "every device ID is V = 1, TV = 1");
    assert_eq!(
        dte[0] & 0x8030_0000_0000_00fc,
        0,
        "DTE word 0 reserved bits"
    );
    assert_eq!(dte[1] & !0xffff, 0, "only the domain ID in word 1");
    assert!(
        dte[2] == 0 || dte[2] == super::super::regs::DTE_INTERRUPTS_BLOCKED,
        "interrupts: IV = 0, or every one refused"
    );
    assert_eq!(dte[3], 0);
    let need = if write { DTE_IW } else { DTE_IR };
    let mode = (dte[0] >> 9) & 7;
    if dte[0] & need == 0 {
        return Err(());
    }
    if mode == 0 {
        return Ok(iova);
    }
    if iova >> (12 + 9 * mode) != 0 {
        return Err(());
    }
    let (mut table, mut level) = (dte[0] & ADDR_MASK, mode);
    loop {
        let e = mem.read(
            HostPhysAddr::new(table),
            ((iova >> (3 + 9 * level)) & 511) as usize,
        );
        if e & PR == 0 || e & need == 0 {
            return Err(());
        }
        // Only PR, Next Level, the address, IR and IW: no build mark left.
        assert_eq!(
            e & !(PR | NEXT_LEVEL_MASK | ADDR_MASK | IR | IW),
            0,
            "{e:#x}"
        );
        let next = (e >> 9) & 7;
        if next == 0 {
            let size = 1u64 << (3 + 9 * level);
            assert!(level <= 2, "4 KiB or 2 MiB pages only");
            assert_eq!(e & ADDR_MASK & (size - 1), 0, "large page aligned");
            return Ok((e & ADDR_MASK) + (iova & (size - 1)));
        }
        assert_eq!(next, level - 1, "no level skipped");
        table = e & ADDR_MASK;
        level = next;
    }
}

/// What QEMU 7.2's amd-iommu does with the same request (`amdvi_do_translate`,
/// `amdvi_page_walk`): the address, or refused, and whether it took its page-fault path
/// (the only trace a refusal leaves there: its event log is never written, see
/// `iommu::amdvi` in the monitor).
fn qemu_7_2(
    mem: &VecMemory,
    dt: &DeviceTable,
    id: u16,
    iova: u64,
    write: bool,
) -> Result<u64, bool> {
    let dte = dt.entry(mem, id).expect("inside the table");
    let perms = |e: u64| (e >> 61) & 3; // IR = 1, IW = 2
    let need = if write { 2 } else { 1 };
    let mut pte = dte[0];
    let mut level = (pte >> 9) & 7;
    if level == 0 {
        // no_remap: the DTE's own permissions.
        return if perms(pte) & need != 0 {
            Ok(iova)
        } else {
            Err(false)
        };
    }
    let mut oldlevel = level;
    while level > 0 {
        if pte & 1 == 0 || perms(pte) & need != need {
            return Err(true);
        }
        let addr = (pte & 0xf_ffff_ffff_f000) + (((iova >> (3 + 9 * level)) & 0x1ff) << 3);
        pte = mem.read(
            HostPhysAddr::new(addr & !0xfff),
            ((addr & 0xfff) / 8) as usize,
        );
        if pte == 0 {
            return Err(false);
        }
        oldlevel = level;
        level = (pte >> 9) & 7;
        if level == 7 {
            unreachable!("no such entries here");
        }
    }
    let mask = !((1u64 << (oldlevel * 9 + 3)) - 1);
    if perms(pte) & need == 0 {
        // A leaf without the permission: the memory core refuses, nothing is logged.
        return Err(false);
    }
    Ok(((pte & 0xf_ffff_ffff_f000) & mask) | (iova & !mask))
}

#[test]
fn devices_reach_exactly_their_sandboxs_memory() {
    for levels in [Levels::Three, Levels::Four] {
        let (mem, dt) = setup(1, levels, 64).unwrap();
        let w = |iova, write| walk(&mem, &dt, EDU, iova, write);
        // RAM: read and write, 2 MiB pages.
        for off in [0, 0x1234, 2 * MIB + 8, 8 * MIB - 1] {
            assert_eq!(w(off, true), Ok(RAM_HPA + off));
            assert_eq!(w(off, false), Ok(RAM_HPA + off));
        }
        // Just above RAM: nothing (the probe's out-of-RAM DMA).
        assert_eq!(w(8 * MIB, true), Err(()));
        assert_eq!(w(8 * MIB, false), Err(()));
        // The directory is read-only, the channel data (sandbox 1 reads it) too, the ack
        // area writable.
        assert_eq!(w(DIRECTORY_GPA + 8, false), Ok(DIR_HPA + 8));
        assert_eq!(w(DIRECTORY_GPA, true), Err(()));
        let data = DIRECTORY_GPA + DIRECTORY_SIZE;
        assert_eq!(w(data, false), Ok(CHAN_HPA));
        assert_eq!(w(data, true), Err(()));
        assert_eq!(w(data + DATA_SIZE, true), Ok(CHAN_HPA + DATA_SIZE));
        // Not the monitor's calibration page, not the BAR.
        assert_eq!(w(CALIBRATION_GPA, false), Err(()));
        assert_eq!(w(0xfea0_0000, true), Err(()));
        // Every other device ID is blocked; none beyond the table.
        for other in [0, EDU - 1, EDU + 1, 127] {
            assert_eq!(walk(&mem, &dt, other, 0, false), Err(()));
            assert_eq!(walk(&mem, &dt, other, 0x1000, true), Err(()));
        }
        assert_eq!(dt.entry(&mem, 128), None);
        // Above the width.
        assert_eq!(w(levels.limit(), false), Err(()));
        assert_eq!(w(!0xfff, true), Err(()));
    }
}

#[test]
fn qemu_7_2_translates_the_same_and_notices_every_missing_page() {
    for levels in [Levels::Three, Levels::Four] {
        let (mem, dt) = setup(1, levels, 64).unwrap();
        for iova in (0..16 * MIB).step_by(0x1000).chain([
            DIRECTORY_GPA,
            DIRECTORY_GPA + DIRECTORY_SIZE,
            DIRECTORY_GPA + DIRECTORY_SIZE + DATA_SIZE,
            CALIBRATION_GPA,
            0xfea0_0000,
            1 << 38,
        ]) {
            for write in [false, true] {
                let spec = walk(&mem, &dt, EDU, iova, write);
                let qemu = qemu_7_2(&mem, &dt, EDU, iova, write);
                assert_eq!(spec.ok(), qemu.ok(), "{iova:#x} write {write}");
                if spec.is_err() && dt_unmapped(&mem, &dt, iova) {
                    assert_eq!(qemu, Err(true), "{iova:#x}: QEMU takes its fault path");
                }
            }
        }
        // A blocked device: refused, and QEMU's Mode 0 path reports nothing.
        assert_eq!(qemu_7_2(&mem, &dt, 0x20, 0, true), Err(false));
        assert_eq!(qemu_7_2(&mem, &dt, 0x20, 0, false), Err(false));
    }
}

/// Whether nothing maps `iova` (as opposed to mapped without the access).
fn dt_unmapped(mem: &VecMemory, dt: &DeviceTable, iova: u64) -> bool {
    walk(mem, dt, EDU, iova, false).is_err() && walk(mem, dt, EDU, iova, true).is_err()
}

#[test]
fn the_writer_may_write_the_channel_data() {
    let (mem, dt) = setup(0, Levels::Three, 64).unwrap();
    let data = DIRECTORY_GPA + DIRECTORY_SIZE;
    assert_eq!(walk(&mem, &dt, EDU, data + 16, true), Ok(CHAN_HPA + 16));
    assert_eq!(walk(&mem, &dt, EDU, data + DATA_SIZE, true), Err(()));
}

#[test]
fn the_domain_reads_back_its_pages() {
    let bytes = sample_table();
    let table = validate(&bytes).unwrap();
    let chan = [HostPhysAddr::new(CHAN_HPA)];
    let p = placement();
    let d = build_domain(
        &table,
        1,
        &place(&p, &chan, &[]),
        VecMemory::new(64),
        Levels::Four,
    )
    .unwrap();
    let t = d.translate(GuestPhysAddr::new(0x30_0000)).unwrap();
    assert_eq!(
        t,
        IoTranslation {
            hpa: HostPhysAddr::new(RAM_HPA + 0x30_0000),
            page_size: 2 * MIB,
            read: true,
            write: true
        }
    );
    let dir = d.translate(GuestPhysAddr::new(DIRECTORY_GPA + 4)).unwrap();
    assert_eq!((dir.page_size, dir.read, dir.write), (0x1000, true, false));
    assert!(d.translate(GuestPhysAddr::new(8 * MIB)).is_none());
    assert!(d.translate(GuestPhysAddr::new(1 << 48)).is_none());
}

#[test]
fn running_out_of_frames_is_an_error_at_every_step() {
    let mut failed = 0;
    for frames in 0..16 {
        match setup(1, Levels::Three, frames) {
            Ok(_) => {}
            Err(DomainError::Tables(BuildError::OutOfFrames)) => failed += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(failed > 2, "{failed}");
}

#[test]
fn a_device_id_gets_one_entry() {
    let mut mem = VecMemory::new(4);
    let base = mem.alloc_table().unwrap();
    mem.alloc_table().unwrap(); // contiguous: the second page
    let dt = DeviceTable::new(&mut mem, base, 2);
    assert_eq!((dt.pages(), dt.base()), (2, base));
    let e = dte_translated(
        0x5000,
        Levels::Three,
        1,
        super::super::regs::DTE_INTERRUPTS_BLOCKED,
    );
    dt.assign(&mut mem, 0x18, e).unwrap();
    dt.assign(&mut mem, 0xff, e).unwrap();
    assert_eq!(dt.assign(&mut mem, 0x18, e), Err(DomainError::Twice(0x18)));
    assert_eq!(
        dt.assign(&mut mem, 0x100, e),
        Err(DomainError::OutsideTable(0x100))
    );
    assert_eq!(dt.entry(&mem, 0xff), Some(e));
    // Entry 0xff is the last of the second page.
    assert_eq!(
        mem.read(HostPhysAddr::new(base.as_u64() + 0x1000), 508),
        e[0]
    );
    assert_eq!(dt.entry(&mem, 0xfe), Some(DTE_BLOCKED));
    // With remapping on, the untouched IDs' interrupts are blocked too; the given
    // entries stay as they are.
    dt.block_interrupts(&mut mem);
    assert_eq!(
        dt.entry(&mem, 0xfe),
        Some([3, 0, 1, 0]),
        "IV = 1, IntCtl = 00b"
    );
    assert_eq!(dt.entry(&mem, 0), Some([3, 0, 1, 0]));
    assert_eq!(dt.entry(&mem, 0xff), Some(e));
    assert_eq!(dt.entry(&mem, 0x18), Some(e));
    assert_eq!(DeviceTable::pages_for(0xfb), 2);
    assert_eq!(DeviceTable::pages_for(0x7f), 1);
    assert_eq!(DeviceTable::pages_for(u16::MAX), 512);
}

#[test]
fn three_levels_refuse_mappings_above_512_gib() {
    let bytes = sample_table();
    let table = validate(&bytes).unwrap();
    let chan = [HostPhysAddr::new(CHAN_HPA)];
    let p = placement();
    // The sample's channel windows lie below 512 GiB: both widths work.
    for levels in [Levels::Three, Levels::Four] {
        let d = build_domain(
            &table,
            1,
            &place(&p, &chan, &[]),
            VecMemory::new(64),
            levels,
        );
        assert!(d.is_ok());
    }
    let mut mem = VecMemory::new(8);
    let pml4 = mem.alloc_table().unwrap();
    let pdpt = mem.alloc_table().unwrap();
    assert_eq!(root_for(&mut mem, pml4, Levels::Four), Ok(pml4));
    let empty = root_for(&mut mem, pml4, Levels::Three).unwrap();
    assert_ne!(empty, pml4, "nothing mapped: a fresh level-3 table");
    mem.write(pml4, 0, pdpt.as_u64() | PR | BUILD_DIRECTORY);
    assert_eq!(root_for(&mut mem, pml4, Levels::Three), Ok(pdpt));
    mem.write(pml4, 1, pdpt.as_u64() | PR | BUILD_DIRECTORY);
    assert_eq!(
        root_for(&mut mem, pml4, Levels::Three),
        Err(DomainError::Tables(BuildError::AboveWidth))
    );
}

fn io_entry(ept: u64) -> u64 {
    crate::iommu_tables::io_entry::<Build>(ept)
}

fn ept_entry(io: u64) -> u64 {
    crate::iommu_tables::ept_entry::<Build>(io)
}

#[test]
fn entry_encoding_round_trips() {
    let leaf = 0x1234_5000 | u64::from(ACCESS_READ) | EPT_WB;
    assert_eq!(io_entry(leaf), 0x1234_5000 | PR | IR);
    assert_eq!(ept_entry(io_entry(leaf)), leaf);
    let big = 0x4000_0000 | u64::from(ACCESS_READ | ACCESS_WRITE) | EPT_WB | LARGE;
    assert_eq!(ept_entry(io_entry(big)), big);
    assert_eq!(
        io_entry(0x7000 | RWX),
        0x7000 | PR | BUILD_DIRECTORY | IR | IW
    );
    assert_eq!(ept_entry(io_entry(0x7000 | RWX)), 0x7000 | RWX);
    // An uncached leaf (memory type 0, ignore-PAT) is a leaf, not a directory entry.
    let uc = 0xfea0_0000 | u64::from(ACCESS_READ | ACCESS_WRITE) | 1 << 6;
    assert_eq!(io_entry(uc), 0xfea0_0000 | PR | IR | IW);
    // Execute-only stays not present; nothing is not present; the marker reads as
    // nothing.
    assert_eq!(
        io_entry(0x7000 | u64::from(quest_abi::ACCESS_EXEC) | EPT_WB),
        0
    );
    assert_eq!(
        (io_entry(0), ept_entry(0), ept_entry(NOT_PRESENT)),
        (0, 0, 0)
    );
}

proptest! {
    /// Every device address translates as the sandbox's EPT does (RAM and channels), or
    /// is refused where the EPT maps nothing (or only the calibration page or a BAR).
    #[test]
    fn the_domain_agrees_with_the_ept(iova in prop_oneof![0..16 * MIB, DIRECTORY_GPA..DIRECTORY_GPA + MIB, any::<u64>()], write: bool) {
        let (mem, dt) = setup(1, Levels::Three, 64).unwrap();
        let bytes = sample_table();
        let table = validate(&bytes).unwrap();
        let chan = [HostPhysAddr::new(CHAN_HPA)];
        let p = placement();
        let plain = HostPlacement { sandbox: &p, channel_hpas: &chan, calibration_hpa: None, device_memory: &[] };
        let ept = build_sandbox_ept(&table, 1, &plain, VecMemory::new(64)).unwrap();
        let expected = ept.translate(GuestPhysAddr::new(iova)).filter(|t| {
            let need = if write { ACCESS_WRITE } else { ACCESS_READ };
            t.access & need != 0
        });
        let got = walk(&mem, &dt, EDU, iova, write);
        prop_assert_eq!(got.ok(), expected.map(|t| t.hpa.as_u64()));
        prop_assert_eq!(qemu_7_2(&mem, &dt, EDU, iova & ((1 << 39) - 1), write).ok(),
            walk(&mem, &dt, EDU, iova & ((1 << 39) - 1), write).ok());
    }
}
