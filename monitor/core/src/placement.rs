//! Host-physical placement: where each sandbox's RAM, directory page and channel lives.
//!
//! Guest-physical layouts are fixed at build time; host-physical placement is chosen at
//! boot from the firmware memory map. The rule is *deterministic first fit*: requests are
//! placed in the order given, each at the lowest `align`-aligned address inside a usable
//! range that overlaps neither a reserved range nor an earlier placement. Same memory map,
//! same table: same placement, on every boot.
//!
//! Pure: no allocation, no I/O; the caller passes the ranges in and gets addresses out.

use core::fmt;
use quest_abi::HostPhysAddr;

/// A half-open host-physical range `[start, end)`, in bytes (the firmware memory map's
/// and the monitor's own ranges; what [`place`] returns are [`HostPhysAddr`]s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// First byte after the range.
    pub end: u64,
}

impl Range {
    /// The range `[start, start + size)`, saturating at the top of the address space.
    pub const fn sized(start: u64, size: u64) -> Self {
        Self {
            start,
            end: start.saturating_add(size),
        }
    }

    /// Whether the two ranges share at least one byte.
    pub const fn overlaps(&self, other: &Range) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Size in bytes (0 for an empty or inverted range).
    pub const fn size(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
}

/// Why a placement failed. The index is the request's position in the caller's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlacementError {
    /// A request has size 0, or its size rounded up to the alignment overflows.
    BadRequest {
        /// Request index.
        index: usize,
    },
    /// The alignment is not a power of two.
    BadAlignment,
    /// The output slice is shorter than the request list.
    OutputTooSmall,
    /// No free, aligned, usable range is large enough for the request.
    NoFit {
        /// Request index.
        index: usize,
        /// Bytes requested (rounded up to the alignment).
        size: u64,
    },
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadRequest { index } => {
                write!(f, "placement request {index} has an invalid size")
            }
            Self::BadAlignment => f.write_str("placement alignment is not a power of two"),
            Self::OutputTooSmall => {
                f.write_str("placement output is shorter than the request list")
            }
            Self::NoFit { index, size } => write!(
                f,
                "no free host memory for request {index} ({} KiB, aligned)",
                size / 1024
            ),
        }
    }
}

/// Rounds `value` up to `align` (a power of two); `None` on overflow.
pub fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// Places every request of `sizes` (bytes) and writes its host-physical base to `out`.
///
/// `usable` are the RAM ranges the firmware reports free; `reserved` are ranges that must
/// never be used even where they overlap a usable range (low memory, the monitor image,
/// boot information, unusable firmware ranges). Every placement is `align`-aligned and
/// occupies its size rounded up to `align`.
pub fn place(
    usable: &[Range],
    reserved: &[Range],
    sizes: &[u64],
    align: u64,
    out: &mut [HostPhysAddr],
) -> Result<(), PlacementError> {
    if align == 0 || !align.is_power_of_two() {
        return Err(PlacementError::BadAlignment);
    }
    if out.len() < sizes.len() {
        return Err(PlacementError::OutputTooSmall);
    }
    for (index, &size) in sizes.iter().enumerate() {
        let size = match align_up(size, align) {
            Some(s) if size != 0 => s,
            _ => return Err(PlacementError::BadRequest { index }),
        };
        let (done, rest) = out.split_at_mut(index);
        let placed = |i: usize| Range::sized(done[i].as_u64(), round(sizes[i], align));
        let blocked = |r: &Range| {
            reserved.iter().copied().chain((0..index).map(placed)).fold(
                None,
                |acc: Option<u64>, b| {
                    if b.overlaps(r) {
                        Some(acc.map_or(b.end, |e| e.max(b.end)))
                    } else {
                        acc
                    }
                },
            )
        };
        let best = usable
            .iter()
            .filter_map(|u| first_fit_in(u, size, align, &blocked))
            .min()
            .ok_or(PlacementError::NoFit { index, size })?;
        rest[0] = HostPhysAddr::new(best);
    }
    Ok(())
}

/// Size rounded up to the alignment (already checked not to overflow by [`place`]).
fn round(size: u64, align: u64) -> u64 {
    align_up(size, align).unwrap_or(u64::MAX)
}

/// Lowest aligned base inside `usable` where `size` bytes are not blocked. `blocked`
/// returns the highest end of any blocker overlapping a candidate, so each step skips
/// past at least one blocker and the search ends.
fn first_fit_in(
    usable: &Range,
    size: u64,
    align: u64,
    blocked: &impl Fn(&Range) -> Option<u64>,
) -> Option<u64> {
    let mut base = align_up(usable.start, align)?;
    loop {
        let end = base.checked_add(size)?;
        if end > usable.end {
            return None;
        }
        match blocked(&Range { start: base, end }) {
            None => return Some(base),
            Some(blocker_end) => base = align_up(blocker_end, align)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;
    const TWO_MIB: u64 = 2 * MIB;

    fn h<const N: usize>(a: [u64; N]) -> [HostPhysAddr; N] {
        a.map(HostPhysAddr::new)
    }

    fn r(start: u64, end: u64) -> Range {
        Range { start, end }
    }

    #[test]
    fn places_in_order_at_lowest_aligned_addresses() {
        let usable = [r(0x10_0000, 512 * MIB)];
        let reserved = [r(0, MIB), r(2 * MIB, 2 * MIB + 0x8_1000)];
        let sizes = [4 * MIB, 0x1000, 2 * MIB];
        let mut out = [HostPhysAddr::ZERO; 3];
        place(&usable, &reserved, &sizes, TWO_MIB, &mut out).unwrap();
        // 0-2 MiB is not aligned-free (reserved up to 1 MiB, usable from 1 MiB: base 0 is
        // outside usable); the image blocks 2-4 MiB; so 4 MiB, then 8 MiB, then 10 MiB.
        assert_eq!(out, h([4 * MIB, 8 * MIB, 10 * MIB]));
    }

    #[test]
    fn skips_ranges_too_small_and_uses_later_ones() {
        let usable = [
            r(0x10_0000, 0x9f_0000),
            r(16 * MIB, 20 * MIB),
            r(64 * MIB, 128 * MIB),
        ];
        let sizes = [8 * MIB];
        let mut out = [HostPhysAddr::ZERO; 1];
        place(&usable, &[], &sizes, TWO_MIB, &mut out).unwrap();
        assert_eq!(out, h([64 * MIB]));
    }

    #[test]
    fn unsorted_usable_ranges_still_give_the_lowest_address() {
        let usable = [r(64 * MIB, 128 * MIB), r(16 * MIB, 32 * MIB)];
        let mut out = [HostPhysAddr::ZERO; 2];
        place(&usable, &[], &[2 * MIB, 2 * MIB], TWO_MIB, &mut out).unwrap();
        assert_eq!(out, h([16 * MIB, 18 * MIB]));
    }

    #[test]
    fn reserved_inside_usable_is_avoided() {
        let usable = [r(0, 64 * MIB)];
        let reserved = [r(6 * MIB + 5, 6 * MIB + 6)];
        let mut out = [HostPhysAddr::ZERO; 2];
        place(&usable, &reserved, &[6 * MIB, 2 * MIB], TWO_MIB, &mut out).unwrap();
        assert_eq!(out, h([0, 8 * MIB]));
    }

    #[test]
    fn reports_which_request_does_not_fit() {
        let usable = [r(0, 16 * MIB)];
        let mut out = [HostPhysAddr::ZERO; 3];
        let err = place(
            &usable,
            &[],
            &[8 * MIB, 6 * MIB, 4 * MIB],
            TWO_MIB,
            &mut out,
        );
        assert_eq!(
            err,
            Err(PlacementError::NoFit {
                index: 2,
                size: 4 * MIB
            })
        );
        assert_eq!(
            err.unwrap_err().to_string(),
            "no free host memory for request 2 (4096 KiB, aligned)"
        );
    }

    #[test]
    fn rejects_bad_input_without_panicking() {
        let usable = [r(0, u64::MAX)];
        let mut out = [HostPhysAddr::ZERO; 2];
        assert_eq!(
            place(&usable, &[], &[0], TWO_MIB, &mut out),
            Err(PlacementError::BadRequest { index: 0 })
        );
        assert_eq!(
            place(&usable, &[], &[u64::MAX], TWO_MIB, &mut out),
            Err(PlacementError::BadRequest { index: 0 })
        );
        assert_eq!(
            place(&usable, &[], &[1], 3, &mut out),
            Err(PlacementError::BadAlignment)
        );
        assert_eq!(
            place(&usable, &[], &[1, 1, 1], TWO_MIB, &mut out),
            Err(PlacementError::OutputTooSmall)
        );
        // Near the top of the address space the search stops instead of wrapping.
        let top = [r(u64::MAX - 3 * MIB, u64::MAX)];
        assert!(matches!(
            place(&top, &[], &[4 * MIB], TWO_MIB, &mut out),
            Err(PlacementError::NoFit { .. })
        ));
    }

    /// Brute force over 2 MiB slots: the lowest slot where `size` fits.
    fn brute_first_fit(usable: &[Range], blockers: &[Range], size: u64) -> Option<u64> {
        (0..128u64).map(|slot| slot * TWO_MIB).find(|&base| {
            let cand = Range::sized(base, size);
            usable
                .iter()
                .any(|u| u.start <= cand.start && cand.end <= u.end)
                && !blockers.iter().any(|b| b.overlaps(&cand))
        })
    }

    fn ranges(max: u64) -> impl Strategy<Value = Vec<Range>> {
        prop::collection::vec((0..max, 1..32 * MIB), 0..6)
            .prop_map(|v| v.into_iter().map(|(s, len)| Range::sized(s, len)).collect())
    }

    proptest! {
        #[test]
        fn placements_are_aligned_usable_disjoint_and_first_fit(
            usable in ranges(200 * MIB),
            reserved in ranges(200 * MIB),
            sizes in prop::collection::vec(1..16 * MIB, 1..6),
        ) {
            let mut out = [HostPhysAddr::ZERO; 8];
            let result = place(&usable, &reserved, &sizes, TWO_MIB, &mut out);
            let mut blockers: Vec<Range> = reserved.clone();
            for (i, &size) in sizes.iter().enumerate() {
                let rounded = align_up(size, TWO_MIB).unwrap();
                let expected = brute_first_fit(&usable, &blockers, rounded);
                match (result, expected) {
                    (Err(PlacementError::NoFit { index, .. }), None) => {
                        prop_assert_eq!(index, i);
                        break;
                    }
                    (_, Some(base)) => {
                        prop_assert_eq!(out[i], HostPhysAddr::new(base), "request {} not at first fit", i);
                        let placed = Range::sized(base, rounded);
                        prop_assert_eq!(base % TWO_MIB, 0);
                        prop_assert!(usable.iter().any(|u| u.start <= base && placed.end <= u.end));
                        prop_assert!(!blockers.iter().any(|b| b.overlaps(&placed)));
                        blockers.push(placed);
                    }
                    (other, None) => prop_assert!(false, "request {} fits nowhere but got {:?}", i, other),
                }
            }
        }

        #[test]
        fn placement_is_deterministic(
            usable in ranges(1 << 40),
            reserved in ranges(1 << 40),
            sizes in prop::collection::vec(1..64 * MIB, 1..8),
        ) {
            let (mut a, mut b) = ([HostPhysAddr::ZERO; 8], [HostPhysAddr::ZERO; 8]);
            let ra = place(&usable, &reserved, &sizes, TWO_MIB, &mut a);
            let rb = place(&usable, &reserved, &sizes, TWO_MIB, &mut b);
            prop_assert_eq!(ra, rb);
            prop_assert_eq!(a, b);
        }
    }
}
