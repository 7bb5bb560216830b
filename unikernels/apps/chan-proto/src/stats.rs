//! Summary statistics of cycle samples.

/// Minimum, median, 99th percentile and maximum of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Smallest sample.
    pub min: u64,
    /// Median (the lower one for an even count).
    pub median: u64,
    /// 99th percentile (nearest rank).
    pub p99: u64,
    /// Largest sample.
    pub max: u64,
}

/// Sorts `samples` and summarises them; `None` if there are none.
pub fn summarize(samples: &mut [u64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let n = samples.len();
    // Nearest rank: the smallest sample with at least 99% of them at or below it.
    let p99_rank = (n * 99).div_ceil(100).max(1);
    Some(Summary {
        min: samples[0],
        median: samples[(n - 1) / 2],
        p99: samples[p99_rank - 1],
        max: samples[n - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_hundred() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let s = summarize(&mut v).unwrap();
        assert_eq!((s.min, s.median, s.p99, s.max), (1, 50, 99, 100));
    }

    #[test]
    fn one_sample_and_none() {
        assert_eq!(summarize(&mut []), None);
        let s = summarize(&mut [7]).unwrap();
        assert_eq!((s.min, s.median, s.p99, s.max), (7, 7, 7, 7));
    }
}
