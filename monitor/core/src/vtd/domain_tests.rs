//! Tests of `vtd::domain`: the tables are walked the way a VT-d unit walks them (root
//! entry, context entry, second-level levels, with the reserved-bit checks QEMU 7.2's
//! intel-iommu makes), not read back through the builder.

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

fn at(b: u8, d: u8, f: u8) -> PciAddress {
    PciAddress::new(b, d, f).unwrap()
}

fn placement() -> SandboxPlacement {
    SandboxPlacement {
        ram_hpa: HostPhysAddr::new(RAM_HPA),
        directory_hpa: Some(HostPhysAddr::new(DIR_HPA)),
        ..SandboxPlacement::UNPLACED
    }
}

/// Sandbox `sandbox` of the sample table as a domain with `levels`, given function
/// 00:03.0 (domain ID 1): the memory and the root table's address.
fn setup(
    sandbox: usize,
    levels: Levels,
    large: bool,
    frames: usize,
) -> Result<(VecMemory, u64), DomainError> {
    let bytes = sample_table();
    let table = validate(&bytes).unwrap();
    let chan = [HostPhysAddr::new(CHAN_HPA)];
    let place = HostPlacement {
        sandbox: &placement(),
        channel_hpas: &chan,
        calibration_hpa: Some(HostPhysAddr::new(0xa000_0000)),
        device_memory: &[MemoryWindow {
            base: 0xfea0_0000,
            size: 0x10_0000,
        }],
    };
    let domain = build_domain(
        &table,
        sandbox,
        &place,
        VecMemory::new(frames),
        levels,
        large,
    )?;
    assert_eq!(domain.levels(), levels);
    let slptptr = domain.root();
    let mut root = RootTable::new(domain.into_memory())?;
    root.add(at(0, 3, 0), slptptr, levels, 1)?;
    let rtaddr = root.root().as_u64();
    Ok((root.into_memory(), rtaddr))
}

/// A VT-d fault reason (VT-d spec appendix A).
type Reason = u8;

/// What the unit does with a request of function `f` to `iova`: the host-physical
/// address, or the fault reason.
fn walk(
    mem: &VecMemory,
    rtaddr: u64,
    f: PciAddress,
    iova: u64,
    write: bool,
) -> Result<u64, Reason> {
    let h = HostPhysAddr::new;
    let root_low = mem.read(h(rtaddr), 2 * usize::from(f.bus));
    assert_eq!(
        mem.read(h(rtaddr), 2 * usize::from(f.bus) + 1),
        0,
        "root upper half reserved"
    );
    if root_low & 1 == 0 {
        return Err(0x1);
    }
    assert_eq!(root_low & 0xffe, 0, "root entry reserved bits");
    let ctx = h(root_low & ADDR_MASK);
    let devfn = 2 * usize::from(f.device << 3 | f.function);
    let (low, high) = (mem.read(ctx, devfn), mem.read(ctx, devfn + 1));
    if low & 1 == 0 {
        return Err(0x2);
    }
    // Bits 11:4 reserved, TT (3:2) = 00; AW a supported width; bits 63:24 and 7 reserved.
    if low & 0xff0 != 0 || (low >> 2) & 3 != 0 || high & 0xffff_ffff_ff00_0080 != 0 {
        return Err(0xb);
    }
    let levels = match high & 7 {
        1 => 3,
        2 => 4,
        _ => return Err(0x3),
    };
    if iova >> (12 + 9 * levels) != 0 {
        return Err(0x4);
    }
    let denied = if write { 0x5 } else { 0x6 };
    let mut table = low & ADDR_MASK;
    for level in (1..=levels).rev() {
        let e = mem.read(h(table), ((iova >> (12 + 9 * (level - 1))) & 511) as usize);
        let needed = if write { SL_W } else { SL_R };
        if e & needed == 0 {
            return Err(denied);
        }
        // Snoop (bit 11) and bits 6:2 stay 0 everywhere here; bit 7 only in a PD.
        assert_eq!(
            e & 0x87c & !(if level == 2 { SL_PS } else { 0 }),
            0,
            "entry {e:#x}"
        );
        if level == 1 || (level == 2 && e & SL_PS != 0) {
            let size = 1u64 << (12 + 9 * (level - 1));
            let base = e & ADDR_MASK & !(size - 1);
            assert_eq!(e & ADDR_MASK & (size - 1), 0, "large leaf reserved bits");
            return Ok(base + (iova & (size - 1)));
        }
        table = e & ADDR_MASK;
    }
    unreachable!("a 4 KiB level ends every walk")
}

#[test]
fn devices_reach_exactly_their_sandboxs_memory() {
    for levels in [Levels::Three, Levels::Four] {
        let (mem, rt) = setup(1, levels, true, 64).unwrap();
        let edu = at(0, 3, 0);
        // RAM: read and write, 2 MiB pages.
        for off in [0, 0x1234, 2 * MIB + 8, 8 * MIB - 1] {
            assert_eq!(walk(&mem, rt, edu, off, true), Ok(RAM_HPA + off));
            assert_eq!(walk(&mem, rt, edu, off, false), Ok(RAM_HPA + off));
        }
        // Just above RAM: nothing (the probe's out-of-RAM DMA).
        assert_eq!(walk(&mem, rt, edu, 8 * MIB, true), Err(0x5));
        assert_eq!(walk(&mem, rt, edu, 8 * MIB, false), Err(0x6));
        // The directory is read-only, the channel data (sandbox 1 reads it) too, the ack
        // area writable.
        assert_eq!(
            walk(&mem, rt, edu, DIRECTORY_GPA + 8, false),
            Ok(DIR_HPA + 8)
        );
        assert_eq!(walk(&mem, rt, edu, DIRECTORY_GPA, true), Err(0x5));
        let data = DIRECTORY_GPA + DIRECTORY_SIZE;
        assert_eq!(walk(&mem, rt, edu, data, false), Ok(CHAN_HPA));
        assert_eq!(walk(&mem, rt, edu, data, true), Err(0x5));
        assert_eq!(
            walk(&mem, rt, edu, data + DATA_SIZE, true),
            Ok(CHAN_HPA + DATA_SIZE)
        );
        // Not the monitor's calibration page (the EPT has it, read-only), not the BAR
        // (the EPT has it, uncached).
        assert_eq!(walk(&mem, rt, edu, CALIBRATION_GPA, false), Err(0x6));
        assert_eq!(walk(&mem, rt, edu, 0xfea0_0000, true), Err(0x5));
        // Other functions: no context entry, or no root entry.
        assert_eq!(walk(&mem, rt, at(0, 3, 1), 0, false), Err(0x2));
        assert_eq!(walk(&mem, rt, at(1, 3, 0), 0, false), Err(0x1));
        // Above the width.
        let beyond = levels.limit();
        assert_eq!(walk(&mem, rt, edu, beyond, false), Err(0x4));
        assert_eq!(walk(&mem, rt, edu, !0xfff, true), Err(0x4));
    }
}

#[test]
fn the_writer_may_write_the_channel_data() {
    let (mem, rt) = setup(0, Levels::Three, true, 64).unwrap();
    let data = DIRECTORY_GPA + DIRECTORY_SIZE;
    assert_eq!(
        walk(&mem, rt, at(0, 3, 0), data + 16, true),
        Ok(CHAN_HPA + 16)
    );
    assert_eq!(
        walk(&mem, rt, at(0, 3, 0), data + DATA_SIZE, true),
        Err(0x5)
    );
}

#[test]
fn units_without_large_pages_get_4k_leaves() {
    let (large, _) = setup(1, Levels::Three, true, 64).unwrap();
    let (mem, rt) = setup(1, Levels::Three, false, 64).unwrap();
    for off in [0, 0x20_1000, 8 * MIB - 4] {
        assert_eq!(walk(&mem, rt, at(0, 3, 0), off, true), Ok(RAM_HPA + off));
    }
    assert_eq!(walk(&mem, rt, at(0, 3, 0), 8 * MIB, true), Err(0x5));
    // 8 MiB of RAM: four leaf tables more than with 2 MiB pages.
    assert_eq!(mem.tables.len(), large.tables.len() + 4);
    // The builder reads the split pages back as mapped (a second mapping is refused).
    let bytes = sample_table();
    let table = validate(&bytes).unwrap();
    let chan = [HostPhysAddr::new(CHAN_HPA)];
    let place = HostPlacement {
        sandbox: &placement(),
        channel_hpas: &chan,
        calibration_hpa: None,
        device_memory: &[],
    };
    let d = build_domain(&table, 1, &place, VecMemory::new(64), Levels::Four, false).unwrap();
    let t = d.translate(GuestPhysAddr::new(0x30_0000)).unwrap();
    assert_eq!((t.hpa.as_u64(), t.page_size), (RAM_HPA + 0x30_0000, 0x1000));
    assert_eq!(
        t.access,
        ACCESS_READ | ACCESS_WRITE,
        "no execute for devices"
    );
    assert!(d.translate(GuestPhysAddr::new(1 << 48)).is_none());
}

#[test]
fn running_out_of_frames_is_an_error_at_every_step() {
    for large in [true, false] {
        let mut failed = 0;
        for frames in 0..16 {
            match setup(1, Levels::Three, large, frames) {
                Ok(_) => {}
                Err(DomainError::Tables(BuildError::OutOfFrames)) => failed += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(failed > 2, "{failed}");
    }
}

#[test]
fn a_function_gets_one_context_entry() {
    let mut root = RootTable::new(VecMemory::new(8)).unwrap();
    let sl = HostPhysAddr::new(0x5000);
    root.add(at(0, 3, 0), sl, Levels::Three, 1).unwrap();
    root.add(at(0, 3, 1), sl, Levels::Three, 1).unwrap();
    root.add(at(2, 0, 0), sl, Levels::Four, 2).unwrap();
    assert_eq!(
        root.add(at(0, 3, 0), sl, Levels::Three, 3),
        Err(DomainError::Twice(at(0, 3, 0)))
    );
    // One root table and two context tables (buses 0 and 2).
    assert_eq!(root.memory().tables.len(), 3);
    let ctx = root.memory().read(root.root(), 0) & ADDR_MASK;
    let e = |i| root.memory().read(HostPhysAddr::new(ctx), i);
    assert_eq!((e(2 * 0x18), e(2 * 0x18 + 1)), (0x5001, 1 | 1 << 8));
}

#[test]
fn three_levels_refuse_mappings_above_512_gib() {
    let mut mem = VecMemory::new(4);
    let pml4 = mem.alloc_table().unwrap();
    let pdpt = mem.alloc_table().unwrap();
    mem.write(pml4, 0, pdpt.as_u64() | SL_R | SL_W);
    assert_eq!(root_for(&mem, pml4, Levels::Three), Ok(pdpt));
    assert_eq!(root_for(&mem, pml4, Levels::Four), Ok(pml4));
    mem.write(pml4, 1, pdpt.as_u64() | SL_R);
    assert_eq!(
        root_for(&mem, pml4, Levels::Three),
        Err(DomainError::Tables(BuildError::AboveWidth))
    );
}

fn sl_entry(ept: u64) -> u64 {
    io_entry::<SecondLevel>(ept)
}

fn ept_entry(sl: u64) -> u64 {
    crate::iommu_tables::ept_entry::<SecondLevel>(sl)
}

#[test]
fn entry_encoding_round_trips() {
    let leaf = 0x1234_5000 | u64::from(ACCESS_READ) | EPT_WB;
    assert_eq!(sl_entry(leaf), 0x1234_5000 | SL_R | SL_LEAF);
    assert_eq!(ept_entry(sl_entry(leaf)), leaf);
    let big = 0x4000_0000 | u64::from(ACCESS_READ | ACCESS_WRITE) | EPT_WB | LARGE;
    assert_eq!(ept_entry(sl_entry(big)), big);
    assert_eq!(sl_entry(0x7000 | RWX), 0x7000 | SL_R | SL_W);
    // An uncached leaf (memory type 0, ignore-PAT) is a leaf, not a pointer.
    let uc = 0xfea0_0000 | u64::from(ACCESS_READ | ACCESS_WRITE) | 1 << 6;
    assert_eq!(sl_entry(uc), 0xfea0_0000 | SL_R | SL_W | SL_LEAF);
    assert_eq!(ept_entry(0x7000 | SL_R | SL_W), 0x7000 | RWX);
    // Execute-only stays not present; nothing is not present.
    assert_eq!(
        sl_entry(0x7000 | u64::from(quest_abi::ACCESS_EXEC) | EPT_WB),
        0
    );
    assert_eq!((sl_entry(0), ept_entry(0)), (0, 0));
}

proptest! {
    /// Every device address translates as the sandbox's EPT does (RAM and channels), or
    /// faults where the EPT maps nothing (or only the calibration page).
    #[test]
    fn the_domain_agrees_with_the_ept(iova in prop_oneof![0..16 * MIB, DIRECTORY_GPA..DIRECTORY_GPA + MIB, any::<u64>()], write: bool) {
        let (mem, rt) = setup(1, Levels::Three, true, 64).unwrap();
        let bytes = sample_table();
        let table = validate(&bytes).unwrap();
        let chan = [HostPhysAddr::new(CHAN_HPA)];
        let place = HostPlacement { sandbox: &placement(), channel_hpas: &chan, calibration_hpa: None, device_memory: &[] };
        let ept = build_sandbox_ept(&table, 1, &place, VecMemory::new(64)).unwrap();
        let expected = ept.translate(GuestPhysAddr::new(iova)).filter(|t| {
            let need = if write { ACCESS_WRITE } else { ACCESS_READ };
            t.access & need != 0
        });
        let got = walk(&mem, rt, at(0, 3, 0), iova, write);
        prop_assert_eq!(got.ok(), expected.map(|t| t.hpa.as_u64()));
    }
}
