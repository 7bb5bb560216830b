//! The partition table and payloads embedded in the monitor image (`.quest_blob`, see
//! `linker.ld` and `quest-build/src/image/embed.rs`): found, validated, hash-checked.
//!
//! Layout of the blob: the table (`quest_abi::encode`) at offset 0, then the payload area
//! at `payload_area_offset(total_size)` of `header.payload_area_size` bytes.

use core::fmt;
use quest_abi::validate::payload_area_offset;
use quest_abi::{name_str, AbiError, Table};
use quest_monitor_core::placement::Range;
use sha2::{Digest, Sha256};

/// The validated contents of the blob.
#[derive(Clone, Copy, Debug)]
pub struct Blob {
    /// The partition table.
    pub table: Table<'static>,
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
    let table = quest_abi::validate(bytes).map_err(BlobError::Invalid)?;
    let offset = payload_area_offset(table.header.total_size.get());
    let size = table.header.payload_area_size.get();
    let payload_area = offset
        .checked_add(size)
        .and_then(|end| bytes.get(offset as usize..end as usize))
        .ok_or(BlobError::Truncated)?;
    Ok(Blob {
        table,
        payload_area,
    })
}

impl Blob {
    /// Checks every payload's SHA-256 (validate already checked every range).
    pub fn check_hashes(&self) -> Result<(), BlobError> {
        for s in 0..self.table.sandboxes.len() {
            for (i, p) in self.table.sandbox_payloads(s).iter().enumerate() {
                let ok = self
                    .payload(p)
                    .is_some_and(|bytes| Sha256::digest(bytes)[..] == p.sha256);
                if !ok {
                    return Err(BlobError::Corrupt {
                        payload: i,
                        sandbox: self.sandbox_name(s),
                    });
                }
            }
        }
        Ok(())
    }

    /// A payload's bytes (`None` only if the table was not validated against this area).
    pub fn payload(&self, p: &quest_abi::PayloadEntry) -> Option<&'static [u8]> {
        let start = usize::try_from(p.offset.get()).ok()?;
        let len = usize::try_from(p.size.get()).ok()?;
        self.payload_area.get(start..start.checked_add(len)?)
    }

    /// Sandbox `s`'s name (validated UTF-8).
    pub fn sandbox_name(&self, s: usize) -> &'static str {
        name_str(&self.table.sandboxes[s].name).unwrap_or("?")
    }
}

/// The 4 KiB zero placeholder `quest-build image` replaces with the real blob. It is the
/// only content of `.quest_blob`, which the linker script puts last (see `linker.ld`).
#[used]
#[link_section = ".quest_blob"]
static PLACEHOLDER: [u8; 4096] = [0; 4096];
