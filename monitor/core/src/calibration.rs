//! The arithmetic of boot-time calibration (`monitor/src/calibrate.rs` measures, this
//! computes): medians and maxima of trials, copy cost per KiB, TSC offsets from
//! round-trip exchanges, and the per-channel view over several core pairs.
//!
//! TSC offset between cores A and B (Quest-V stamped one way; here a round trip, so the
//! delivery latency cancels out): A reads `t0`, signals B; B reads `tb` and answers; A
//! reads `t1` when it sees the answer. B's read happened between A's two reads, so
//! `tb - offset` lies in `[t0, t1]` on A's clock: `offset` (B minus A) lies in
//! `[tb - t1, tb - t0]`, i.e. `tb - (t0 + t1) / 2` within `(t1 - t0) / 2`. Of N
//! exchanges the one with the shortest round trip gives the tightest interval.

use quest_abi::calibration::{ChannelConstants, Cost};

/// The median and maximum of `samples` (sorted in place); zero for no samples. With an
/// even count the median is the upper of the two middle values (never optimistic).
pub fn cost(samples: &mut [u64]) -> Cost {
    samples.sort_unstable();
    match samples.last() {
        None => Cost::default(),
        Some(&max) => Cost {
            median: samples[samples.len() / 2],
            max,
        },
    }
}

/// Cycles per KiB of a copy of `bytes` bytes that took `cycles`, rounded up (0 for an
/// empty copy).
pub fn per_kib(cycles: u64, bytes: u64) -> u64 {
    if bytes == 0 {
        return 0;
    }
    let v = (u128::from(cycles) * 1024).div_ceil(u128::from(bytes));
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// One round-trip exchange: A's TSC before signalling, B's TSC when it saw the signal,
/// A's TSC when it saw B's answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exchange {
    /// A's TSC before it signalled B.
    pub t0: u64,
    /// B's TSC when it answered.
    pub tb: u64,
    /// A's TSC when it saw the answer.
    pub t1: u64,
}

/// A TSC offset (the second core's TSC minus the first's) and how far it may be off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offset {
    /// Cycles.
    pub offset: i64,
    /// The true offset lies within `offset ± uncertainty`.
    pub uncertainty: u64,
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

impl Offset {
    /// The smallest `Offset` whose range covers `[lo, hi]` (`lo <= hi`).
    fn covering(lo: i128, hi: i128) -> Self {
        let offset = (lo + hi).div_euclid(2);
        let uncertainty = (hi - offset).max(offset - lo);
        Self {
            offset: clamp_i64(offset),
            uncertainty: u64::try_from(uncertainty).unwrap_or(u64::MAX),
        }
    }

    fn range(self) -> (i128, i128) {
        let (o, u) = (i128::from(self.offset), i128::from(self.uncertainty));
        (o - u, o + u)
    }

    /// The offset seen from the other core (first minus second).
    pub fn reversed(self) -> Self {
        Self {
            offset: clamp_i64(-i128::from(self.offset)),
            uncertainty: self.uncertainty,
        }
    }

    /// An offset that covers both `self` and `other` (for a channel over several pairs).
    pub fn covering_both(self, other: Self) -> Self {
        let (a, b) = (self.range(), other.range());
        Self::covering(a.0.min(b.0), a.1.max(b.1))
    }
}

/// The offset (B minus A) from the exchange with the shortest round trip; `None` when
/// no exchange is usable (`t1 < t0`).
pub fn offset_from(exchanges: &[Exchange]) -> Option<Offset> {
    let best = exchanges
        .iter()
        .filter(|e| e.t1 >= e.t0)
        .min_by_key(|e| e.t1 - e.t0)?;
    let tb = i128::from(best.tb);
    Some(Offset::covering(
        tb - i128::from(best.t1),
        tb - i128::from(best.t0),
    ))
}

/// What one core pair (A, B) measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PairResult {
    /// Cache-line round trip A -> B -> A.
    pub line: Cost,
    /// B's TSC minus A's.
    pub offset: Offset,
}

impl PairResult {
    /// The same result seen from B.
    pub fn reversed(self) -> Self {
        Self {
            line: self.line,
            offset: self.offset.reversed(),
        }
    }
}

/// Results of distinct unordered core pairs, so a pair shared by several channels (or
/// both directions of a ping-pong) is measured once. Holds up to `N`; past that, a
/// caller measures again rather than remembering.
#[derive(Clone, Copy, Debug)]
pub struct PairCache<const N: usize> {
    entries: [(u32, u32, PairResult); N],
    len: usize,
}

impl<const N: usize> Default for PairCache<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> PairCache<N> {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            entries: [(
                0,
                0,
                PairResult {
                    line: Cost { median: 0, max: 0 },
                    offset: Offset {
                        offset: 0,
                        uncertainty: 0,
                    },
                },
            ); N],
            len: 0,
        }
    }

    /// The result for pair (a, b), oriented from a (offset = b minus a).
    pub fn get(&self, a: u32, b: u32) -> Option<PairResult> {
        self.entries[..self.len]
            .iter()
            .find_map(|&(x, y, r)| match (x, y) {
                _ if (x, y) == (a, b) => Some(r),
                _ if (x, y) == (b, a) => Some(r.reversed()),
                _ => None,
            })
    }

    /// Remembers `r` measured from a to b (false when full).
    pub fn insert(&mut self, a: u32, b: u32, r: PairResult) -> bool {
        let Some(slot) = self.entries.get_mut(self.len) else {
            return false;
        };
        *slot = (a, b, r);
        self.len += 1;
        true
    }

    /// Distinct pairs remembered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One channel's constants over all its (writer core, reader core) pairs: the worst
/// round trip (by median, then max) and an offset covering every pair.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChannelAccumulator {
    worst: Option<(u32, u32, Cost)>,
    offset: Option<Offset>,
    pairs: u32,
}

impl ChannelAccumulator {
    /// Adds the pair (writer core, reader core) with `r` oriented from the writer.
    pub fn add(&mut self, writer_core: u32, reader_core: u32, r: PairResult) {
        self.pairs += 1;
        let worse = self
            .worst
            .is_none_or(|(_, _, w)| (r.line.median, r.line.max) > (w.median, w.max));
        if worse {
            self.worst = Some((writer_core, reader_core, r.line));
        }
        self.offset = Some(match self.offset {
            None => r.offset,
            Some(o) => o.covering_both(r.offset),
        });
    }

    /// The channel's constants and the pair with the worst round trip; `None` without
    /// any pair.
    pub fn finish(&self) -> Option<(ChannelConstants, (u32, u32))> {
        let (w, r, line) = self.worst?;
        let offset = self.offset?;
        Some((
            ChannelConstants {
                line_round_trip: line,
                tsc_offset: offset.offset,
                offset_uncertainty: offset.uncertainty,
                pairs: self.pairs,
            },
            (w, r),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn median_and_max() {
        assert_eq!(cost(&mut []), Cost::default());
        assert_eq!(cost(&mut [5]), Cost { median: 5, max: 5 });
        assert_eq!(cost(&mut [9, 1, 5]), Cost { median: 5, max: 9 });
        assert_eq!(cost(&mut [4, 1, 3, 2]), Cost { median: 3, max: 4 });
    }

    #[test]
    fn per_kib_rounds_up() {
        assert_eq!(per_kib(4000, 4096), 1000);
        assert_eq!(per_kib(4001, 4096), 1001);
        assert_eq!(per_kib(10, 0), 0);
        assert_eq!(per_kib(u64::MAX, 1), u64::MAX);
    }

    #[test]
    fn the_shortest_round_trip_gives_the_offset() {
        // B runs 500 cycles ahead. First exchange: slow there (300), fast back (20).
        // Second: symmetric 40/40. The second is shorter and exact.
        let ex = [
            Exchange {
                t0: 1000,
                tb: 1000 + 300 + 500,
                t1: 1000 + 320,
            },
            Exchange {
                t0: 5000,
                tb: 5000 + 40 + 500,
                t1: 5000 + 80,
            },
        ];
        assert_eq!(
            offset_from(&ex),
            Some(Offset {
                offset: 500,
                uncertainty: 40
            })
        );
        // The first alone: biased, but its uncertainty covers the truth.
        let one = offset_from(&ex[..1]).unwrap();
        assert_eq!(
            one,
            Offset {
                offset: 640,
                uncertainty: 160
            }
        );
        assert!(one.offset - one.uncertainty as i64 <= 500);
        assert_eq!(offset_from(&[]), None);
        assert_eq!(
            offset_from(&[Exchange {
                t0: 9,
                tb: 0,
                t1: 8
            }]),
            None
        );
    }

    #[test]
    fn offsets_reverse_and_cover() {
        let a = Offset {
            offset: 10,
            uncertainty: 5,
        };
        assert_eq!(
            a.reversed(),
            Offset {
                offset: -10,
                uncertainty: 5
            }
        );
        let b = Offset {
            offset: -20,
            uncertainty: 3,
        };
        // [5, 15] and [-23, -17] -> [-23, 15].
        assert_eq!(
            a.covering_both(b),
            Offset {
                offset: -4,
                uncertainty: 19
            }
        );
        let extreme = Offset {
            offset: i64::MIN,
            uncertainty: 0,
        };
        assert_eq!(extreme.reversed().offset, i64::MAX);
    }

    #[test]
    fn pairs_are_cached_unordered() {
        let mut cache = PairCache::<2>::new();
        let r = PairResult {
            line: Cost {
                median: 100,
                max: 150,
            },
            offset: Offset {
                offset: 7,
                uncertainty: 2,
            },
        };
        assert!(cache.is_empty());
        assert!(cache.insert(0, 1, r));
        assert_eq!(cache.get(0, 1), Some(r));
        assert_eq!(cache.get(1, 0), Some(r.reversed()));
        assert_eq!(cache.get(0, 2), None);
        assert!(cache.insert(2, 3, r));
        assert!(!cache.insert(4, 5, r), "full");
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_channel_reports_its_worst_pair_and_covers_all_offsets() {
        let mut acc = ChannelAccumulator::default();
        assert!(acc.finish().is_none());
        let pair = |median, max, offset, uncertainty| PairResult {
            line: Cost { median, max },
            offset: Offset {
                offset,
                uncertainty,
            },
        };
        acc.add(0, 2, pair(100, 300, 4, 2));
        acc.add(1, 2, pair(120, 200, -4, 2));
        acc.add(1, 3, pair(110, 900, 0, 1));
        let (c, worst) = acc.finish().unwrap();
        assert_eq!(worst, (1, 2));
        assert_eq!(
            c.line_round_trip,
            Cost {
                median: 120,
                max: 200
            }
        );
        assert_eq!((c.tsc_offset, c.offset_uncertainty, c.pairs), (0, 6, 3));
    }

    proptest! {
        /// Whatever the true offset and the delivery delays each way, the estimate's
        /// range holds the truth, and the uncertainty is half the best round trip.
        #[test]
        fn the_truth_lies_within_the_uncertainty(
            truth in -1_000_000i64..1_000_000,
            trips in proptest::collection::vec((0u64..5000, 0u64..5000, 0u64..1_000_000), 1..16),
        ) {
            let ex: Vec<Exchange> = trips.iter().map(|&(there, back, start)| {
                let t0 = 2_000_000 + start;
                Exchange {
                    t0,
                    tb: (t0 as i64 + there as i64 + truth) as u64,
                    t1: t0 + there + back,
                }
            }).collect();
            let o = offset_from(&ex).unwrap();
            prop_assert!((o.offset - truth).unsigned_abs() <= o.uncertainty);
            let best = trips.iter().map(|&(a, b, _)| a + b).min().unwrap();
            prop_assert!(o.uncertainty <= best.div_ceil(2));
        }

        #[test]
        fn covering_holds_both(a in -1000i64..1000, ua in 0u64..500, b in -1000i64..1000, ub in 0u64..500) {
            let (x, y) = (Offset { offset: a, uncertainty: ua }, Offset { offset: b, uncertainty: ub });
            let c = x.covering_both(y);
            for o in [x, y] {
                prop_assert!(c.offset - (c.uncertainty as i64) <= o.offset - o.uncertainty as i64);
                prop_assert!(c.offset + (c.uncertainty as i64) >= o.offset + o.uncertainty as i64);
            }
        }
    }
}
