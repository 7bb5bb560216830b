//! What the ACPI tables the monitor parses share (ACPI 6.5, 5.2.6, the System
//! Description Table header): a 4-byte signature, a length at bytes 4-7 that bounds the
//! table, and bytes that sum to zero; and, for the IOMMU tables (`vtd::dmar`,
//! `amdvi::ivrs`), a list of sub-structures after a fixed header, each with its length
//! at bytes 2-3. Each table's own fields and sub-structure types stay in its own module.
//!
//! Nothing here trusts the firmware: every read is bounds-checked and a length that is
//! short or overruns the table is an error, never a panic or a read out of bounds.

/// Why a table's header was not accepted (each table's error type says it with its name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer bytes than the header, or than the header's length field says.
    Truncated,
    /// The signature is another table's.
    BadSignature,
    /// The bytes do not sum to zero.
    BadChecksum,
}

/// The little-endian `u16` at byte `at` of `b` (`None` past its end).
pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// The little-endian `u32` at byte `at` of `b` (`None` past its end).
pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// The little-endian `u64` at byte `at` of `b` (`None` past its end).
pub fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The table at the start of `bytes`, if its signature is `signature`, its length field
/// at least `header_len` (the table's own fixed header, the SDT header included) and
/// within `bytes`, and its bytes sum to zero. Bytes after its length are not part of it.
pub fn checked_table<'a>(
    bytes: &'a [u8],
    signature: &[u8; 4],
    header_len: usize,
) -> Result<&'a [u8], HeaderError> {
    if bytes.get(..4) != Some(signature.as_slice()) {
        return Err(if bytes.len() < 4 {
            HeaderError::Truncated
        } else {
            HeaderError::BadSignature
        });
    }
    let len = u32_at(bytes, 4).ok_or(HeaderError::Truncated)? as usize;
    if len < header_len {
        return Err(HeaderError::Truncated);
    }
    let table = bytes.get(..len).ok_or(HeaderError::Truncated)?;
    if table.iter().fold(0u8, |s, &b| s.wrapping_add(b)) != 0 {
        return Err(HeaderError::BadChecksum);
    }
    Ok(table)
}

/// The sub-structures of `table` after its first `header_len` bytes, in order.
pub fn structures(table: &[u8], header_len: usize) -> Structures<'_> {
    Structures {
        table,
        at: header_len,
    }
}

/// Iterator of [`structures`]: `(offset in the table, its bytes)`, each at least 4 bytes
/// long (its type at byte 0, or bytes 0-1, is there to read); `Err(offset)` for one whose
/// length is below 4 or overruns the table, and nothing after it.
#[derive(Clone, Debug)]
pub struct Structures<'a> {
    table: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Structures<'a> {
    type Item = Result<(usize, &'a [u8]), usize>;

    fn next(&mut self) -> Option<Self::Item> {
        let at = self.at;
        if at >= self.table.len() {
            return None;
        }
        let structure = u16_at(self.table, at + 2)
            .map(usize::from)
            .filter(|&length| length >= 4)
            .and_then(|length| self.table.get(at..at + length));
        match structure {
            Some(s) => {
                self.at += s.len();
                Some(Ok((at, s)))
            }
            None => {
                self.at = self.table.len();
                Some(Err(at))
            }
        }
    }
}

/// A table with `signature`, `revision`, `fields` from byte 36 (its own header fields,
/// zero-filled to `header_len`) and `structures` after them, its length and checksum
/// right.
#[cfg(test)]
pub(crate) fn test_table(
    signature: &[u8; 4],
    revision: u8,
    fields: &[u8],
    header_len: usize,
    structures: &[std::vec::Vec<u8>],
) -> std::vec::Vec<u8> {
    let mut t = std::vec::Vec::from(*signature);
    t.extend_from_slice(&[0; 4]); // length, below
    t.extend_from_slice(&[revision, 0]); // revision, checksum (below)
    t.extend_from_slice(b"QUEST QUESTTBL\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
    t.truncate(36);
    t.extend_from_slice(fields);
    t.resize(header_len, 0);
    for s in structures {
        t.extend_from_slice(s);
    }
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    let sum = t.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    t[9] = 0u8.wrapping_sub(sum);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn headers_are_checked() {
        let good = test_table(b"TEST", 1, &[], 40, &[vec![7, 0, 4, 0]]);
        assert_eq!(checked_table(&good, b"TEST", 40), Ok(&good[..]));
        // Bytes after the length are not the table's.
        let mut longer = good.clone();
        longer.push(0xaa);
        assert_eq!(checked_table(&longer, b"TEST", 40), Ok(&good[..]));
        for n in 0..good.len() {
            assert_eq!(
                checked_table(&good[..n], b"TEST", 40),
                Err(HeaderError::Truncated),
                "truncated to {n}"
            );
        }
        assert_eq!(
            checked_table(&good, b"TSET", 40),
            Err(HeaderError::BadSignature)
        );
        assert_eq!(
            checked_table(&good, b"TEST", 48),
            Err(HeaderError::Truncated)
        );
        let mut sum = good.clone();
        sum[20] ^= 1;
        assert_eq!(
            checked_table(&sum, b"TEST", 40),
            Err(HeaderError::BadChecksum)
        );
    }

    #[test]
    fn structures_are_walked_by_their_length() {
        let t = test_table(
            b"TEST",
            1,
            &[],
            40,
            &[vec![1, 0, 6, 0, 9, 9], vec![2, 0, 4, 0]],
        );
        let all: Vec<_> = structures(&t, 40).collect();
        assert_eq!(all, [Ok((40, &t[40..46])), Ok((46, &t[46..50]))]);
        // Below 4 bytes, or past the end: an error and nothing after it.
        for length in [3, 9] {
            let t = test_table(
                b"TEST",
                1,
                &[],
                40,
                &[vec![1, 0, length, 0], vec![2, 0, 4, 0]],
            );
            assert_eq!(structures(&t, 40).collect::<Vec<_>>(), [Err(40)]);
        }
        // A structure whose length field is cut off.
        let t = test_table(b"TEST", 1, &[], 40, &[vec![1, 0, 4, 0], vec![2, 0]]);
        assert_eq!(
            structures(&t, 40).collect::<Vec<_>>(),
            [Ok((40, &t[40..44])), Err(44)]
        );
    }

    #[test]
    fn fields_read_little_endian_and_never_past_the_end() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(u16_at(&b, 6), Some(0x0807));
        assert_eq!(u32_at(&b, 0), Some(0x0403_0201));
        assert_eq!(u64_at(&b, 0), Some(0x0807_0605_0403_0201));
        assert_eq!(u16_at(&b, 7), None);
        assert_eq!(u32_at(&b, 5), None);
        assert_eq!(u64_at(&b, 1), None);
        assert_eq!(u64_at(&b, usize::MAX), None);
    }
}
