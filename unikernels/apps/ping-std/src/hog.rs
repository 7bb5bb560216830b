//! The memory-hungry part: most of the heap in 1 MiB `Vec`s, every word written with a
//! pattern of (chunk, word) and checked later, each chunk checked to lie outside the
//! channel window.

use quest_abi::layout::{CHANNEL_WINDOW_GPA, CHANNEL_WINDOW_SIZE};

/// Words in one chunk (1 MiB).
const CHUNK_WORDS: usize = (1 << 20) / 8;

/// The pattern word `word` of chunk `chunk` holds.
fn pattern(chunk: usize, word: usize) -> u64 {
    chan_proto::mix(((chunk as u64) << 32) | word as u64)
}

/// Heap chunks allocated so far, up to a target.
#[derive(Debug)]
pub struct Hog {
    target: usize,
    chunks: Vec<Vec<u64>>,
    lowest: usize,
    highest: usize,
}

impl Hog {
    /// A hog that will take `mib` MiB.
    pub fn new(mib: u64) -> Self {
        Self {
            target: usize::try_from(mib).unwrap_or(usize::MAX),
            chunks: Vec::new(),
            lowest: usize::MAX,
            highest: 0,
        }
    }

    /// Whether it holds all it wants.
    pub fn is_full(&self) -> bool {
        self.chunks.len() >= self.target
    }

    /// Allocates and fills one more chunk; an error if it lies in the channel window.
    pub fn grow(&mut self) -> Result<(), String> {
        let n = self.chunks.len();
        let chunk: Vec<u64> = (0..CHUNK_WORDS).map(|w| pattern(n, w)).collect();
        let start = chunk.as_ptr() as usize;
        let end = start + CHUNK_WORDS * 8;
        let window =
            CHANNEL_WINDOW_GPA as usize..(CHANNEL_WINDOW_GPA + CHANNEL_WINDOW_SIZE) as usize;
        if start < window.end && window.start < end {
            return Err(format!(
                "chunk {n} at {start:#x}..{end:#x} lies in the channel window {:#x}..{:#x}",
                window.start, window.end
            ));
        }
        self.lowest = self.lowest.min(start);
        self.highest = self.highest.max(end);
        self.chunks.push(chunk);
        Ok(())
    }

    /// Checks every word of every chunk, then reports what was held and where.
    pub fn check(&self) -> Result<(), String> {
        for (c, chunk) in self.chunks.iter().enumerate() {
            if let Some(w) = (0..chunk.len()).find(|&w| chunk[w] != pattern(c, w)) {
                return Err(format!("chunk {c} word {w} changed"));
            }
        }
        if !self.chunks.is_empty() {
            println!(
                "ping-std: heap hog: {} MiB in {} chunks at {:#x}..{:#x}, every word intact; channel window at {:#x}",
                self.chunks.len(),
                self.chunks.len(),
                self.lowest,
                self.highest,
                CHANNEL_WINDOW_GPA
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_filled_and_checked() {
        let mut hog = Hog::new(2);
        assert!(!hog.is_full());
        hog.grow().unwrap();
        hog.grow().unwrap();
        assert!(hog.is_full());
        assert_eq!(hog.check(), Ok(()));
        hog.chunks[1][77] ^= 1;
        assert_eq!(hog.check(), Err("chunk 1 word 77 changed".to_string()));
    }
}
