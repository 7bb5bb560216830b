//! Tests of `amdvi::ivrs`: QEMU 7.2's own table, hand-made ones with every entry kind,
//! and hostile ones.

use super::*;
use std::vec::Vec;

fn at(b: u8, d: u8, f: u8) -> PciAddress {
    PciAddress::new(b, d, f).unwrap()
}

/// The IVRS QEMU 7.2 gives `-machine q35 -device amd-iommu -device edu` (dumped by the
/// monitor at boot): one type 10h unit at 0xfed80000, itself 00:02.0 (capability at
/// 0x40), selecting 00:00.0, 00:01.0, 00:02.0, edu at 00:03.0, 00:1f.0/2/3, and the I/O
/// APIC as special device 00:14.0.
const QEMU_7_2: &str = "495652536c0000000121424f4348532042585043202020200100000042585043\
0100000000280000000000000000000010d13c00100040000000d8fe00000000\
00000000440000000200000002080000021000000218000002f8000002fa0000\
02fb00004800000000a00001";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// An IVRS table with `blocks` after the header, its length and checksum right.
fn table(blocks: &[Vec<u8>]) -> Vec<u8> {
    // IVinfo: 40-bit physical addresses.
    let info = 0x0000_2800u32.to_le_bytes();
    crate::acpi_walk::test_table(b"IVRS", 2, &info, HEADER_LEN, blocks)
}

/// An IVHD of `kind` for the unit at `base` (itself 00:02.0) with `entries`.
fn ivhd(kind: u8, segment: u16, base: u64, entries: &[Vec<u8>]) -> Vec<u8> {
    let mut s = vec![kind, 0xd1, 0, 0];
    s.extend_from_slice(&0x0010u16.to_le_bytes());
    s.extend_from_slice(&0x40u16.to_le_bytes());
    s.extend_from_slice(&base.to_le_bytes());
    s.extend_from_slice(&segment.to_le_bytes());
    s.extend_from_slice(&[0; 6]); // info, feature reporting / attributes
    if kind != 0x10 {
        s.extend_from_slice(&0x25u64.to_le_bytes()); // EFR image
        s.extend_from_slice(&[0; 8]);
    }
    for e in entries {
        s.extend_from_slice(e);
    }
    let len = s.len() as u16;
    s[2..4].copy_from_slice(&len.to_le_bytes());
    s
}

fn e4(kind: u8, id: u16) -> Vec<u8> {
    let [lo, hi] = id.to_le_bytes();
    vec![kind, lo, hi, 0]
}

fn e8(kind: u8, id: u16, other: u16) -> Vec<u8> {
    let [lo, hi] = id.to_le_bytes();
    let [olo, ohi] = other.to_le_bytes();
    vec![kind, lo, hi, 0, 0, olo, ohi, 0]
}

/// An ACPI-device (F0h) entry with a `uid`.
fn acpi(id: u16, uid: &[u8]) -> Vec<u8> {
    let mut e = e4(0xf0, id);
    e.extend_from_slice(b"AMDI0020"); // HID
    e.extend_from_slice(&[0; 8]); // CID
    e.extend_from_slice(&[2, uid.len() as u8]);
    e.extend_from_slice(uid);
    e
}

/// An IVMD (type 21h, memory for one device): skipped.
fn ivmd() -> Vec<u8> {
    let mut s = vec![0x21, 0, 32, 0];
    s.resize(32, 0);
    s
}

#[test]
fn qemu_7_2s_table_parses() {
    let i = Ivrs::parse(&hex(QEMU_7_2)).unwrap();
    assert_eq!(i.info, 0x2800);
    let units: Vec<_> = i.units().collect();
    assert_eq!(units.len(), 1);
    let u = units[0];
    assert_eq!(
        (u.block_type, u.function, u.capability, u.base, u.segment),
        (0x10, at(0, 2, 0), 0x40, 0xfed8_0000, 0)
    );
    assert_eq!(u.features, None);
    assert_eq!(i.unit_for(0, at(0, 3, 0)), Some((0, 0x18)), "edu");
    assert_eq!(i.unit_for(0, at(0, 0x1f, 3)), Some((0, 0xfb)));
    assert_eq!(i.unit_for(0, at(0, 4, 0)), None, "not listed");
    assert_eq!(i.unit_for(1, at(0, 3, 0)), None, "other segment");
    assert_eq!(u.highest_id(), Some(0xfb));
    assert_eq!(u.requester_id(at(0, 0x14, 0)), Some(0xa0), "the I/O APIC");
    // Its special device entry: variety 1 (I/O APIC), handle 0 (I/O APIC ID 0).
    assert_eq!(u.ioapics().collect::<Vec<_>>(), [(0, 0xa0)]);
    assert_eq!(i.ioapic(), Some((0, 0xa0)));
}

#[test]
fn every_entry_kind_names_its_devices() {
    let t = table(&[
        ivmd(),
        ivhd(
            0x11,
            0,
            0xfeb8_0000,
            &[
                e4(0, 0),                 // padding
                e4(2, 0x0018),            // 00:03.0
                e4(3, 0x0100),            // 01:00.0 ..
                e4(4, 0x01ff),            // .. 01:1f.7
                e8(0x42, 0x0208, 0x0200), // 02:01.0 as 02:00.0
                e8(0x43, 0x0300, 0x0300), // bus 3 as 03:00.0 ..
                e4(4, 0x03ff),
                e8(0x46, 0x0400, 0), // extended select
                e8(0x47, 0x0500, 0), // extended range
                e4(4, 0x0507),
                e8(0x48, 0x0001, 0x00a0), // special device 00:14.0
                acpi(0x00a5, b"ID"),
                e4(0x3f, 0x0600),    // reserved 4-byte type: skipped
                e8(0x7f, 0x0700, 0), // reserved 8-byte type: skipped
            ],
        ),
        vec![0x99, 0, 8, 0, 1, 2, 3, 4], // an unknown block type
    ]);
    let i = Ivrs::parse(&t).unwrap();
    let u = i.units().next().unwrap();
    assert_eq!(u.features, Some(0x25));
    let id = |b, d, f| i.unit_for(0, at(b, d, f)).map(|(_, id)| id);
    assert_eq!(id(0, 3, 0), Some(0x18));
    assert_eq!(id(1, 0, 0), Some(0x100));
    assert_eq!(id(1, 0x1f, 7), Some(0x1ff));
    assert_eq!(id(2, 1, 0), Some(0x200), "alias");
    assert_eq!(id(2, 0, 0), None, "the alias itself is not listed");
    assert_eq!(id(3, 0x1f, 7), Some(0x300), "aliased range");
    assert_eq!(id(4, 0, 0), Some(0x400));
    assert_eq!(id(5, 0, 7), Some(0x507));
    // The special device of variety 0 is no I/O APIC.
    assert_eq!(u.ioapics().count(), 0);
    assert_eq!(i.ioapic(), None);
    assert_eq!(id(5, 1, 0), None);
    assert_eq!(id(0, 0x14, 0), Some(0xa0));
    assert_eq!(id(0, 0x14, 5), Some(0xa5), "ACPI device");
    assert_eq!(id(6, 0, 0), None, "reserved entries name nothing");
    assert_eq!(id(7, 0, 0), None);
    assert_eq!(u.highest_id(), Some(0x507));
}

#[test]
fn select_all_covers_the_segment_and_units_split_by_segment() {
    let t = table(&[
        ivhd(0x10, 0, 0xfed8_0000, &[e4(1, 0)]),
        ivhd(0x10, 1, 0xfed9_0000, &[e4(2, 0x0018)]),
    ]);
    let i = Ivrs::parse(&t).unwrap();
    assert_eq!(i.unit_for(0, at(0xff, 0x1f, 7)), Some((0, 0xffff)));
    assert_eq!(i.unit_for(1, at(0, 3, 0)), Some((1, 0x18)));
    assert_eq!(i.unit_for(1, at(0, 4, 0)), None);
    assert_eq!(i.units().next().unwrap().highest_id(), Some(0xffff));
}

#[test]
fn one_unit_described_twice_keeps_its_highest_type() {
    let t = table(&[
        ivhd(0x10, 0, 0xfed8_0000, &[e4(2, 0x0018)]),
        ivhd(0x40, 0, 0xfed8_0000, &[e4(2, 0x0018), e4(2, 0x0020)]),
        ivhd(0x11, 0, 0xfed8_0000, &[e4(2, 0x0018)]),
    ]);
    let i = Ivrs::parse(&t).unwrap();
    let units: Vec<_> = i.units().collect();
    assert_eq!(units.len(), 1);
    assert_eq!(units[0].block_type, 0x40);
    assert_eq!(i.unit_for(0, at(0, 4, 0)), Some((0, 0x20)));
}

#[test]
fn hostile_tables_are_errors() {
    let good = hex(QEMU_7_2);
    // Every truncation of a valid table (length field unchanged) is refused.
    for n in 0..good.len() {
        assert!(Ivrs::parse(&good[..n]).is_err(), "truncated to {n}");
    }
    let mut sig = good.clone();
    sig[0] = b'X';
    assert_eq!(Ivrs::parse(&sig), Err(IvrsError::BadSignature));
    let mut sum = good.clone();
    sum[40] ^= 1;
    assert_eq!(Ivrs::parse(&sum), Err(IvrsError::BadChecksum));
    let mut short = good.clone();
    short[4..8].copy_from_slice(&10u32.to_le_bytes());
    assert!(matches!(
        Ivrs::parse(&short),
        Err(IvrsError::Truncated { .. })
    ));
    assert_eq!(Ivrs::parse(&table(&[])), Err(IvrsError::NoUnit));
    assert_eq!(Ivrs::parse(&table(&[ivmd()])), Err(IvrsError::NoUnit));
    assert_eq!(
        Ivrs::parse(&table(&[vec![0x10, 0, 2, 0]])),
        Err(IvrsError::BadBlock { at: 48 }),
        "length below 4"
    );
    assert_eq!(
        Ivrs::parse(&table(&[vec![0x10, 0, 200, 0]])),
        Err(IvrsError::BadBlock { at: 48 }),
        "overruns the table"
    );
    let mut short_unit = ivhd(0x11, 0, 0xfed8_0000, &[]);
    short_unit.truncate(30);
    short_unit[2] = 30;
    assert_eq!(
        Ivrs::parse(&table(&[short_unit])),
        Err(IvrsError::BadUnit { at: 48 }),
        "11h header is 40 bytes"
    );
    for base in [0, 0xfed8_0800] {
        assert_eq!(
            Ivrs::parse(&table(&[ivhd(0x10, 0, base, &[])])),
            Err(IvrsError::BadUnit { at: 48 })
        );
    }
    let entries_at = 48 + 24;
    let bad = |entries: &[Vec<u8>]| Ivrs::parse(&table(&[ivhd(0x10, 0, 0x1000, entries)]));
    assert_eq!(
        bad(&[e4(4, 0x10)]),
        Err(IvrsError::BadEntry { at: entries_at }),
        "end without a start"
    );
    assert_eq!(
        bad(&[e4(3, 0x10)]),
        Err(IvrsError::BadEntry { at: entries_at }),
        "start without an end"
    );
    assert_eq!(
        bad(&[e4(3, 0x10), e4(2, 0x18), e4(4, 0x20)]),
        Err(IvrsError::BadEntry { at: entries_at + 4 }),
        "a range interrupted"
    );
    assert_eq!(
        bad(&[e4(3, 0x20), e4(4, 0x10)]),
        Err(IvrsError::BadEntry { at: entries_at + 4 }),
        "a range backwards"
    );
    assert_eq!(
        bad(&[vec![0x80, 0, 0, 0]]),
        Err(IvrsError::BadEntry { at: entries_at }),
        "16-byte types are not known"
    );
    assert_eq!(
        bad(&[vec![0x42, 0, 0, 0]]),
        Err(IvrsError::BadEntry { at: entries_at }),
        "8-byte entry cut short"
    );
    let mut long_uid = acpi(0x10, b"ID");
    long_uid[21] = 200;
    assert_eq!(
        bad(&[long_uid]),
        Err(IvrsError::BadEntry { at: entries_at }),
        "UID overruns"
    );
    let many: Vec<_> = (0..=MAX_RANGES as u16).map(|i| e4(2, i)).collect();
    assert_eq!(bad(&many), Err(IvrsError::TooMany));
    let units: Vec<_> = (0..=MAX_UNITS as u64)
        .map(|i| ivhd(0x10, 0, 0x1000 * (i + 1), &[]))
        .collect();
    assert_eq!(Ivrs::parse(&table(&units)), Err(IvrsError::TooMany));
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap fuzz: every byte of a valid table set to a few values, checksum fixed.
    let good = table(&[
        ivmd(),
        ivhd(
            0x11,
            0,
            0xfed8_0000,
            &[
                e4(3, 0x100),
                e4(4, 0x1ff),
                e8(0x43, 0x300, 0x300),
                e4(4, 0x3ff),
                acpi(0xa5, b"UID"),
            ],
        ),
        ivhd(0x10, 0, 0xfed8_0000, &[e4(1, 0)]),
    ]);
    for i in 0..good.len() {
        for v in [0u8, 1, 2, 3, 4, 0x10, 0x11, 0x40, 0x43, 0x7f, 0xf0, 0xff] {
            let mut t = good.clone();
            t[i] = v;
            let sum = t.iter().fold(0u8, |s, &b| s.wrapping_add(b));
            t[9] = t[9].wrapping_sub(sum);
            if let Ok(ivrs) = Ivrs::parse(&t) {
                for u in ivrs.units() {
                    let _ = (u.highest_id(), u.requester_id(at(3, 1, 2)));
                }
            }
        }
    }
}

#[test]
fn the_io_apic_is_known_only_when_the_table_names_exactly_one() {
    // Special device entries: bytes 5-6 the device ID, byte 4 the handle, byte 7 the
    // variety (1: I/O APIC, 2: HPET).
    let special = |handle: u8, id: u16, variety: u8| {
        let mut e = e8(0x48, 0, id);
        e[4] = handle;
        e[7] = variety;
        e
    };
    let one = table(&[ivhd(
        0x10,
        0,
        0xfeb8_0000,
        &[special(9, 0x00a0, 1), special(0, 0x00a1, 2)],
    )]);
    let i = Ivrs::parse(&one).unwrap();
    assert_eq!(
        i.units().next().unwrap().ioapics().collect::<Vec<_>>(),
        [(9, 0xa0)]
    );
    assert_eq!(i.ioapic(), Some((0, 0xa0)), "the HPET is not an I/O APIC");
    let two = table(&[ivhd(
        0x10,
        0,
        0xfeb8_0000,
        &[special(9, 0x00a0, 1), special(10, 0x00a2, 1)],
    )]);
    assert_eq!(
        Ivrs::parse(&two).unwrap().ioapic(),
        None,
        "which is which: unknown"
    );
}
