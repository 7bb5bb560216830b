//! Which parts of a sandbox's RAM its payloads leave uncovered: at (re)load only those are
//! zeroed, since the payload copies overwrite the rest anyway.

/// Calls `emit(start, end)` for every maximal part of `[0, len)` that none of `covered`
/// (half-open `(start, end)` ranges, any order, overlaps allowed, clipped to `len`)
/// touches, in ascending order. `covered` is walked once per gap (a sandbox has a handful
/// of payloads), so nothing needs to be sorted or allocated.
pub fn uncovered<I>(len: u64, covered: I, mut emit: impl FnMut(u64, u64))
where
    I: Iterator<Item = (u64, u64)> + Clone,
{
    let mut cursor = 0;
    while cursor < len {
        // Extend the cursor over every range that starts at or before it.
        let mut advanced = false;
        for (start, end) in covered.clone() {
            if start <= cursor && end > cursor {
                cursor = end.min(len);
                advanced = true;
            }
        }
        if advanced {
            continue;
        }
        // The gap runs up to the nearest range that starts after the cursor.
        let next = covered
            .clone()
            .filter(|&(start, end)| start > cursor && end > start)
            .map(|(start, _)| start)
            .min()
            .unwrap_or(len)
            .min(len);
        emit(cursor, next);
        cursor = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn gaps(len: u64, covered: &[(u64, u64)]) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        uncovered(len, covered.iter().copied(), |s, e| out.push((s, e)));
        out
    }

    #[test]
    fn gaps_between_unordered_and_overlapping_payloads() {
        assert_eq!(gaps(100, &[]), [(0, 100)]);
        assert_eq!(gaps(100, &[(0, 100)]), []);
        assert_eq!(
            gaps(100, &[(50, 60), (10, 20), (15, 30)]),
            [(0, 10), (30, 50), (60, 100)]
        );
        assert_eq!(gaps(100, &[(90, 200), (0, 5)]), [(5, 90)]);
        assert_eq!(gaps(100, &[(20, 20), (30, 10)]), [(0, 100)], "empty ranges");
        assert_eq!(gaps(0, &[(0, 10)]), []);
    }

    proptest! {
        #[test]
        fn every_byte_is_either_covered_or_in_exactly_one_gap(
            len in 0u64..300,
            covered in proptest::collection::vec((0u64..320, 0u64..80), 0..6),
        ) {
            let covered: Vec<(u64, u64)> = covered.into_iter().map(|(s, n)| (s, s + n)).collect();
            let g = gaps(len, &covered);
            for b in 0..len {
                let in_payload = covered.iter().any(|&(s, e)| s <= b && b < e);
                let in_gaps = g.iter().filter(|&&(s, e)| s <= b && b < e).count();
                prop_assert_eq!(in_gaps, usize::from(!in_payload), "byte {}", b);
            }
            prop_assert!(g.windows(2).all(|w| w[0].1 < w[1].0), "ascending, maximal");
        }
    }
}
