//! The partition table and payloads embedded in the monitor image (`.quest_blob`, see
//! `linker.ld` and `quest-build/src/image/embed.rs`): found and validated at boot; its
//! payloads' hashes are checked by all cores together before any vCPU runs
//! ([`verify_payloads`]).
//!
//! Layout of the blob: the table (`quest_abi::encode`) at offset 0, then the payload area
//! at `payload_area_offset(total_size)` of `header.payload_area_size` bytes.

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};
use quest_abi::{AbiError, TableView};
use quest_monitor_core::placement::Range;

/// The validated contents of the blob.
#[derive(Clone, Copy, Debug)]
pub struct Blob {
    /// The partition table.
    pub table: TableView<'static>,
    /// The payload area (every payload's `offset` is relative to its start).
    pub payload_area: &'static [u8],
}

/// Why the blob cannot be used. Display gives the text after `quest: `.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobError {
    /// The placeholder is still there: the image was not built by `quest-build image`.
    Missing,
    /// `quest_abi::validate` refused the table.
    Invalid(AbiError),
    /// The payload area the table declares runs past the end of the blob.
    Truncated,
    /// A payload's bytes do not match its SHA-256.
    Corrupt {
        /// Index of the payload within its sandbox.
        payload: usize,
        /// The sandbox's name.
        sandbox: &'static str,
    },
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Missing => f.write_str("no partition table embedded in this image"),
            Self::Invalid(e) => write!(f, "{e}"),
            Self::Truncated => {
                f.write_str("the embedded payload area is truncated; rebuild the image")
            }
            Self::Corrupt { payload, sandbox } => write!(
                f,
                "payload {payload} of sandbox '{sandbox}' is corrupt (SHA-256 mismatch); refusing to boot"
            ),
        }
    }
}

/// Validates the table at the start of the loaded blob `range`.
///
/// # Safety
/// `range` must be the loaded `.quest_blob` section, readable and never written.
pub unsafe fn open(range: Range) -> Result<Blob, BlobError> {
    // SAFETY: per the contract.
    let bytes: &'static [u8] =
        unsafe { core::slice::from_raw_parts(range.start as *const u8, range.size() as usize) };
    if bytes.iter().take(64).all(|&b| b == 0) {
        return Err(BlobError::Missing);
    }
    let table = TableView::validate(bytes).map_err(BlobError::Invalid)?;
    let area = table.payload_area();
    let payload_area = usize::try_from(area.start)
        .ok()
        .zip(usize::try_from(area.end).ok())
        .and_then(|(start, end)| bytes.get(start..end))
        .ok_or(BlobError::Truncated)?;
    Ok(Blob {
        table,
        payload_area,
    })
}

/// Payload verification shared by the cores (see [`verify_payloads`]).
struct Verification {
    /// Next payload index to claim.
    next: AtomicUsize,
    /// Lowest index of a corrupt payload (`usize::MAX`: none).
    first_bad: AtomicUsize,
    /// Cores that finished their share.
    done: AtomicUsize,
}

static VERIFICATION: Verification = Verification {
    next: AtomicUsize::new(0),
    first_bad: AtomicUsize::new(usize::MAX),
    done: AtomicUsize::new(0),
};

/// Checks every payload's SHA-256 against the table (validate already checked every
/// range), shared by the `cores` cores that call this: each claims payloads one at a time
/// until none is left, then waits for all the others. Every caller gets the same result
/// (the corrupt payload with the lowest index, as a sequential check in table order
/// would report), and no caller returns before every payload was checked, so no vCPU
/// runs before the whole image is verified. `true` in the result's `Ok` for the one
/// caller that finished last.
pub fn verify_payloads(
    table: &TableView<'static>,
    area: &[u8],
    cores: usize,
) -> Result<bool, BlobError> {
    let v = &VERIFICATION;
    loop {
        let i = v.next.fetch_add(1, Ordering::Relaxed);
        let Some(p) = table.payload(i) else { break };
        let ok = p
            .bytes_in(area)
            .is_some_and(|bytes| crate::arch::sha256::digest(bytes)[..] == p.sha256()[..]);
        if !ok {
            v.first_bad.fetch_min(i, Ordering::AcqRel);
        }
    }
    let last = v.done.fetch_add(1, Ordering::AcqRel) + 1 == cores;
    while v.done.load(Ordering::Acquire) < cores {
        core::hint::spin_loop();
    }
    let bad = v.first_bad.load(Ordering::Acquire);
    match table.payload(bad) {
        None => Ok(last),
        Some(p) => Err(BlobError::Corrupt {
            payload: p.index_in_sandbox(),
            sandbox: table.sandbox(p.sandbox()).map_or("?", |s| s.name()),
        }),
    }
}

/// The 4 KiB zero placeholder `quest-build image` replaces with the real blob. It is the
/// only content of `.quest_blob`, which the linker script puts last (see `linker.ld`).
#[used]
#[link_section = ".quest_blob"]
static PLACEHOLDER: [u8; 4096] = [0; 4096];
