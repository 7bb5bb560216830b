//! The victim: a checksummed workload that runs alongside the attackers and proves, with
//! a verified result, that nothing they did reached it.
//!
//! Each round fills a heap buffer from a pseudo-random sequence, sorts it, and checks the
//! result three ways: sorted order, and sum and xor equal to those of the sequence
//! recomputed without memory. If the victim writes a channel, it also fills the data area
//! with a pattern at the start and checks at the end that the reader could not change it.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use quest_rt::quest_abi::directory::ROLE_WRITER;
use quest_rt::{println, Ctx};

quest_rt::entry!(main, vcpu0_only);

/// Elements sorted per round.
const ELEMENTS: usize = 4096;
/// Rounds when the manifest sets no `ROUNDS` environment variable.
const DEFAULT_ROUNDS: u64 = 16;

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// Sum and xor of the sequence for `seed`, recomputed without storing it.
fn expected(seed: u64) -> (u64, u64) {
    let mut state = seed;
    (0..ELEMENTS).fold((0u64, 0u64), |(sum, xor), _| {
        let v = xorshift(&mut state);
        (sum.wrapping_add(v), xor ^ v)
    })
}

/// One round: returns its checksum, or `None` if a check failed.
fn round(seed: u64, buf: &mut Vec<u64>) -> Option<u64> {
    buf.clear();
    let mut state = seed;
    buf.extend((0..ELEMENTS).map(|_| xorshift(&mut state)));
    buf.sort_unstable();
    let sorted = buf.windows(2).all(|w| w[0] <= w[1]);
    let sum = buf.iter().fold(0u64, |a, &v| a.wrapping_add(v));
    let xor = buf.iter().fold(0u64, |a, &v| a ^ v);
    (sorted && (sum, xor) == expected(seed)).then_some(sum.rotate_left(17) ^ xor)
}

/// The pattern word at index `i` of the channel's data area.
fn pattern(i: usize) -> u64 {
    0x5157_0000_0000_0000 | i as u64
}

fn main(ctx: &Ctx) -> i32 {
    let args = ctx.args();
    let rounds = args
        .var("ROUNDS")
        .and_then(|r| r.parse().ok())
        .unwrap_or(DEFAULT_ROUNDS);
    // Our own channel data areas: writable for us, read-only for the (attacking) reader.
    let written: Vec<(u64, usize)> = ctx
        .channels()
        .iter()
        .filter(|e| e.role.get() == ROLE_WRITER)
        .map(|e| (e.data_gpa.get(), (e.data_size.get() / 8) as usize))
        .collect();
    for &(gpa, words) in &written {
        // SAFETY: the directory names this channel's data area, which the monitor maps
        // writable for its writer (us) at that guest address, identity-mapped in our page
        // tables; nothing else in this program refers to it.
        let area = unsafe { core::slice::from_raw_parts_mut(gpa as *mut u64, words) };
        for (i, w) in area.iter_mut().enumerate() {
            *w = pattern(i);
        }
    }
    println!("victim: {rounds} rounds of {ELEMENTS} elements");
    let mut buf = Vec::with_capacity(ELEMENTS);
    let mut result = 0u64;
    for r in 0..rounds {
        match round(0x9e37_79b9_7f4a_7c15 ^ r, &mut buf) {
            Some(c) => result = result.rotate_left(5) ^ c,
            None => {
                println!("victim: result BAD in round {r}");
                return 1;
            }
        }
    }
    for &(gpa, words) in &written {
        // SAFETY: as above; read-only view this time.
        let area = unsafe { core::slice::from_raw_parts(gpa as *const u64, words) };
        if let Some(i) = (0..words).find(|&i| area[i] != pattern(i)) {
            println!("victim: result BAD: channel word {i} was changed");
            return 1;
        }
    }
    println!("victim: result ok {result:#018x}");
    0
}
