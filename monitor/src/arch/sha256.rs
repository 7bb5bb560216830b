//! SHA-256 of the payloads at boot: with the CPU's SHA extensions (SHA-NI) when it has
//! them, else with `sha2`'s software compression.
//!
//! `sha2` picks SHA-NI itself only where the target enables SSE; `x86_64-unknown-none` is
//! soft-float (the monitor never touches the guests' XMM registers), so there it always
//! uses software. Here the SHA-NI rounds are two functions of assembly (below), used only
//! while the payloads are verified at boot, before any vCPU runs, on cores where
//! [`enable_on_this_core`] turned SSE on; [`scrub`] zeroes the XMM registers afterwards,
//! so no guest starts with another sandbox's payload data in them. No other monitor code
//! uses SSE. Every boot checks this code: each payload's digest must match the one
//! `quest-build` computed with `sha2` on the host.

use core::arch::x86_64::{__cpuid, __cpuid_count};
use core::sync::atomic::{AtomicU8, Ordering};
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};

/// FIPS 180-4 section 4.2.2: the round constants.
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// FIPS 180-4 section 5.3.3: the initial hash value.
const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Whether SHA-NI is used: 0 not yet asked, 1 yes, 2 no.
static SHA_NI: AtomicU8 = AtomicU8::new(0);

/// Whether this CPU has SHA-NI and what it needs (FXSR for CR4.OSFXSR, SSE2, SSSE3,
/// SSE4.1). Every core of one machine answers the same.
pub fn available() -> bool {
    match SHA_NI.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            // Leaf 7 is read only when the maximum basic leaf includes it.
            let max = __cpuid(0).eax;
            let l1 = __cpuid(1);
            let sha = max >= 7 && __cpuid_count(7, 0).ebx & (1 << 29) != 0;
            let fxsr_sse2 = l1.edx & (1 << 24) != 0 && l1.edx & (1 << 26) != 0;
            let ssse3_sse41 = l1.ecx & (1 << 9) != 0 && l1.ecx & (1 << 19) != 0;
            let has = sha && fxsr_sse2 && ssse3_sse41;
            SHA_NI.store(if has { 1 } else { 2 }, Ordering::Relaxed);
            has
        }
    }
}

/// Lets this core execute SSE instructions if SHA-NI is [`available`]: CR4.OSFXSR and
/// OSXMMEXCPT on, CR0.EM and TS off (SDM Vol. 3A 13.1.4). The guests' own CR0/CR4 are
/// their VMCS's; this changes only the monitor's.
///
/// # Safety
/// Call on each core before it hashes, with interrupts disabled.
pub unsafe fn enable_on_this_core() {
    if !available() {
        return;
    }
    // SAFETY: the CPU has FXSR and SSE (checked by `available`); setting these bits
    // only permits SSE instructions, which the monitor executes nowhere but here.
    unsafe {
        Cr0::update(|f| f.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED));
        Cr4::update(|f| {
            f.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE);
        });
    }
}

/// Zeroes XMM0-15 on this core (nothing without SHA-NI, which is the only monitor code
/// that writes them): called after the payload check, before this core's first VM entry.
pub fn scrub() {
    if available() {
        // SAFETY: SSE is on (`enable_on_this_core` ran on every core before hashing).
        unsafe { quest_scrub_xmm() }
    }
}

/// The SHA-256 digest of `data` (FIPS 180-4: padding with 0x80, zeros and the length
/// in bits, big-endian).
pub fn digest(data: &[u8]) -> [u8; 32] {
    let mut state = H0;
    let full = data.len() / 64 * 64;
    let rest = &data[full..];
    // SAFETY: `[u8; 64]` has alignment 1; the first `full` bytes of `data` are
    // `full / 64` such arrays.
    let blocks =
        unsafe { core::slice::from_raw_parts(data.as_ptr().cast::<[u8; 64]>(), full / 64) };
    compress(&mut state, blocks);
    let mut tail = [[0u8; 64]; 2];
    let flat = tail.as_flattened_mut();
    flat[..rest.len()].copy_from_slice(rest);
    flat[rest.len()] = 0x80;
    let n = if rest.len() < 56 { 1 } else { 2 };
    let bits = (data.len() as u64).wrapping_mul(8);
    flat[n * 64 - 8..n * 64].copy_from_slice(&bits.to_be_bytes());
    compress(&mut state, &tail[..n]);
    let mut out = [0u8; 32];
    for (o, s) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&s.to_be_bytes());
    }
    out
}

fn compress(state: &mut [u32; 8], blocks: &[[u8; 64]]) {
    if blocks.is_empty() {
        return;
    }
    if available() {
        // SAFETY: the CPU has SHA, SSSE3 and SSE4.1 (`available`) and callers hash only
        // after `enable_on_this_core` (see the module documentation); `state` is 8 words,
        // `blocks` holds `blocks.len()` (non-zero) blocks of 64 bytes, `K` 64 words.
        unsafe {
            quest_sha256_ni(
                state.as_mut_ptr(),
                blocks.as_ptr().cast(),
                blocks.len(),
                K.as_ptr(),
            )
        }
    } else {
        sha2::block_api::compress256(state, blocks);
    }
}

/// Four rounds (SDM Vol. 2, SHA256RNDS2): message words `$w` (a register) plus the
/// constants at byte `$k` of `K` (in rcx) go to xmm0, the operand SHA256RNDS2 implies. The
/// state lives in xmm1 (ABEF: A in the highest dword, F in the lowest) and xmm2 (CDGH);
/// each SHA256RNDS2 does two rounds and writes the new ABEF over the CDGH register, the
/// old ABEF being the new CDGH, so two in a row leave ABEF in xmm1 and CDGH in xmm2.
#[rustfmt::skip]
macro_rules! rounds {
    ($k:literal, $w:literal) => {
        concat!(
            "movdqu xmm0, [rcx + ", $k, "]\n",
            "paddd xmm0, ", $w, "\n",
            "sha256rnds2 xmm2, xmm1\n",
            "pshufd xmm0, xmm0, 0x0e\n",
            "sha256rnds2 xmm1, xmm2\n",
        )
    };
}

/// The next four message words, over the oldest four (`$a`, W[t-16..t-12]), given the
/// next older `$b` (W[t-12..]), `$c` (W[t-8..]) and the newest `$d` (W[t-4..]):
/// W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16]; SHA256MSG1 adds the s0 terms,
/// PALIGNR picks W[t-7..t-3] out of `$c` and `$d`, SHA256MSG2 adds the s1 terms.
#[rustfmt::skip]
macro_rules! schedule {
    ($a:literal, $b:literal, $c:literal, $d:literal) => {
        concat!(
            "sha256msg1 ", $a, ", ", $b, "\n",
            "movdqa xmm10, ", $d, "\n",
            "palignr xmm10, ", $c, ", 4\n",
            "paddd ", $a, ", xmm10\n",
            "sha256msg2 ", $a, ", ", $d, "\n",
        )
    };
}

extern "sysv64" {
    /// The compression function with SHA-NI over `blocks` (non-zero) 64-byte blocks at
    /// `data`, with `k` = [`K`] (assembly below).
    ///
    /// # Safety
    /// SSE enabled on this core, the CPU has SHA, SSSE3 and SSE4.1; `state` is 8
    /// writable words, `data` `64 * blocks` readable bytes, `k` the 64 words of [`K`].
    fn quest_sha256_ni(state: *mut u32, data: *const u8, blocks: usize, k: *const u32);

    /// Zeroes XMM0-15 (assembly below).
    ///
    /// # Safety
    /// SSE enabled on this core.
    fn quest_scrub_xmm();
}

// The two functions above, in assembly of their own: the target is soft-float, so Rust
// code (inline `asm!` included) cannot name XMM registers. System V arguments: rdi,
// rsi, rdx, rcx; every XMM register is caller-saved. In `quest_sha256_ni` message words
// are in xmm3-6 (four each, lowest dword first), xmm7 reverses the bytes of each dword
// (the message is big-endian), xmm8/9 keep the state at the start of the block.
core::arch::global_asm!(
    ".section .text.quest_scrub_xmm, \"ax\", @progbits",
    ".globl quest_scrub_xmm",
    "quest_scrub_xmm:",
    "pxor xmm0, xmm0",
    "pxor xmm1, xmm1",
    "pxor xmm2, xmm2",
    "pxor xmm3, xmm3",
    "pxor xmm4, xmm4",
    "pxor xmm5, xmm5",
    "pxor xmm6, xmm6",
    "pxor xmm7, xmm7",
    "pxor xmm8, xmm8",
    "pxor xmm9, xmm9",
    "pxor xmm10, xmm10",
    "pxor xmm11, xmm11",
    "pxor xmm12, xmm12",
    "pxor xmm13, xmm13",
    "pxor xmm14, xmm14",
    "pxor xmm15, xmm15",
    "ret",
    ".section .text.quest_sha256_ni, \"ax\", @progbits",
    ".globl quest_sha256_ni",
    "quest_sha256_ni:",
    // [a b c d] -> [b a d c], [e f g h] -> [h g f e] (lowest dword first), then
    // ABEF = [f e b a] and CDGH = [h g d c].
    "movdqu xmm1, [rdi]",
    "movdqu xmm2, [rdi + 16]",
    "pshufd xmm1, xmm1, 0xb1",
    "pshufd xmm2, xmm2, 0x1b",
    "movdqa xmm10, xmm1",
    "palignr xmm1, xmm2, 8",
    "pblendw xmm2, xmm10, 0xf0",
    "mov rax, 0x0405060700010203",
    "movq xmm7, rax",
    "mov rax, 0x0c0d0e0f08090a0b",
    "pinsrq xmm7, rax, 1",
    "2:",
    "movdqa xmm8, xmm1",
    "movdqa xmm9, xmm2",
    "movdqu xmm3, [rsi]",
    "pshufb xmm3, xmm7",
    "movdqu xmm4, [rsi + 16]",
    "pshufb xmm4, xmm7",
    "movdqu xmm5, [rsi + 32]",
    "pshufb xmm5, xmm7",
    "movdqu xmm6, [rsi + 48]",
    "pshufb xmm6, xmm7",
    rounds!("0", "xmm3"),
    rounds!("16", "xmm4"),
    rounds!("32", "xmm5"),
    rounds!("48", "xmm6"),
    schedule!("xmm3", "xmm4", "xmm5", "xmm6"),
    rounds!("64", "xmm3"),
    schedule!("xmm4", "xmm5", "xmm6", "xmm3"),
    rounds!("80", "xmm4"),
    schedule!("xmm5", "xmm6", "xmm3", "xmm4"),
    rounds!("96", "xmm5"),
    schedule!("xmm6", "xmm3", "xmm4", "xmm5"),
    rounds!("112", "xmm6"),
    schedule!("xmm3", "xmm4", "xmm5", "xmm6"),
    rounds!("128", "xmm3"),
    schedule!("xmm4", "xmm5", "xmm6", "xmm3"),
    rounds!("144", "xmm4"),
    schedule!("xmm5", "xmm6", "xmm3", "xmm4"),
    rounds!("160", "xmm5"),
    schedule!("xmm6", "xmm3", "xmm4", "xmm5"),
    rounds!("176", "xmm6"),
    schedule!("xmm3", "xmm4", "xmm5", "xmm6"),
    rounds!("192", "xmm3"),
    schedule!("xmm4", "xmm5", "xmm6", "xmm3"),
    rounds!("208", "xmm4"),
    schedule!("xmm5", "xmm6", "xmm3", "xmm4"),
    rounds!("224", "xmm5"),
    schedule!("xmm6", "xmm3", "xmm4", "xmm5"),
    rounds!("240", "xmm6"),
    "paddd xmm1, xmm8",
    "paddd xmm2, xmm9",
    "add rsi, 64",
    "dec rdx",
    "jnz 2b",
    // Back to [a b c d] and [e f g h]: ABEF -> [a b e f], CDGH -> [g h c d].
    "pshufd xmm1, xmm1, 0x1b",
    "pshufd xmm2, xmm2, 0xb1",
    "movdqa xmm10, xmm1",
    "pblendw xmm1, xmm2, 0xf0",
    "palignr xmm2, xmm10, 8",
    "movdqu [rdi], xmm1",
    "movdqu [rdi + 16], xmm2",
    "ret",
);
