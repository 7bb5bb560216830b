//! Setting the ELF OS/ABI byte of every object member of a static library in place.
//!
//! The archive is read with `object`'s `ar` reader (GNU, BSD and COFF variants, long
//! names, symbol tables); `object` cannot write archives, and none needs writing: the
//! patch changes one byte inside each member and leaves every offset as it was.

use object::read::archive::ArchiveFile;

/// Index of `EI_OSABI` in an ELF identification.
const EI_OSABI: usize = 7;
/// ELF magic.
const ELF_MAGIC: &[u8] = b"\x7fELF";

/// Why an archive cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a readable ar archive: {0}")]
pub struct ArchiveError(String);

impl From<object::read::Error> for ArchiveError {
    fn from(e: object::read::Error) -> Self {
        Self(e.to_string())
    }
}

/// The byte ranges of every member's contents in `archive`, in order (symbol tables and
/// the long-name table are not members).
pub fn member_ranges(archive: &[u8]) -> Result<Vec<core::ops::Range<usize>>, ArchiveError> {
    let file = ArchiveFile::parse(archive)?;
    let mut ranges = Vec::new();
    for member in file.members() {
        let (offset, size) = member?.file_range();
        let range = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(size).ok())
            .and_then(|(start, size)| Some(start..start.checked_add(size)?))
            .filter(|r| r.end <= archive.len())
            .ok_or_else(|| ArchiveError(format!("a member at byte {offset} is out of range")))?;
        ranges.push(range);
    }
    Ok(ranges)
}

/// Sets `EI_OSABI` to `osabi` in every ELF member of `archive`, in place; returns how
/// many members were changed or already had it.
pub fn set_elf_osabi(archive: &mut [u8], osabi: u8) -> Result<usize, ArchiveError> {
    let mut count = 0;
    for range in member_ranges(archive)? {
        let data = &mut archive[range];
        if data.len() > EI_OSABI && data.starts_with(ELF_MAGIC) {
            data[EI_OSABI] = osabi;
            count += 1;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The archive magic.
    const MAGIC: &[u8] = b"!<arch>\n";

    /// An archive of `(name, contents)` members, written the GNU way (60-byte headers,
    /// odd sizes padded).
    fn archive(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for (name, data) in members {
            let header = format!(
                "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                name,
                0,
                0,
                0,
                644,
                data.len()
            );
            assert_eq!(header.len(), 60);
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    fn elf(osabi: u8, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        v[..4].copy_from_slice(ELF_MAGIC);
        v[4] = 2; // ELFCLASS64
        v[EI_OSABI] = osabi;
        v
    }

    #[test]
    fn patches_every_elf_member_and_nothing_else() {
        let symtab = b"\0\0\0\0".as_slice();
        let a = elf(0, 65);
        let b = elf(3, 64);
        let text = b"not an object, 7th byte stays".as_slice();
        let mut bytes = archive(&[("/", symtab), ("a.o/", &a), ("b.o/", &b), ("t/", text)]);
        let before = bytes.clone();
        assert_eq!(set_elf_osabi(&mut bytes, 255).unwrap(), 2);
        let ranges = member_ranges(&bytes).unwrap();
        // The symbol table is no member.
        assert_eq!(ranges.len(), 3);
        assert_eq!(bytes[ranges[0].start + EI_OSABI], 255);
        assert_eq!(bytes[ranges[1].start + EI_OSABI], 255);
        assert_eq!(&bytes[ranges[2].clone()], text);
        // Exactly two bytes changed.
        let changed = before.iter().zip(&bytes).filter(|(x, y)| x != y).count();
        assert_eq!(changed, 2);
        assert_eq!(before.len(), bytes.len());
    }

    #[test]
    fn bsd_long_names_are_skipped() {
        let obj = elf(0, 70);
        let mut data = b"a_long_member_name.o".to_vec();
        data.extend_from_slice(&obj);
        let mut bytes = MAGIC.to_vec();
        // A BSD archive: the long name heads the member's data.
        bytes.extend_from_slice(&archive(&[("#1/20", &data)])[MAGIC.len()..]);
        assert_eq!(set_elf_osabi(&mut bytes, 255).unwrap(), 1);
        let r = &member_ranges(&bytes).unwrap()[0];
        assert_eq!(bytes[r.start..r.start + 4], *ELF_MAGIC);
        assert_eq!(bytes[r.start + EI_OSABI], 255);
    }

    #[test]
    fn malformed_archives_are_errors_not_panics() {
        assert!(member_ranges(b"hello").is_err());
        let good = archive(&[("a.o/", &elf(0, 64))]);
        // Cut anywhere inside the member: an error, never a panic.
        for cut in MAGIC.len() + 1..good.len() {
            assert!(member_ranges(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_size = good.clone();
        bad_size[MAGIC.len() + 48..MAGIC.len() + 58].copy_from_slice(b"99999999  ");
        assert!(member_ranges(&bad_size).is_err());
        // Arbitrary bytes after the magic never panic.
        for seed in 0..200u32 {
            let mut v = MAGIC.to_vec();
            let mut x = seed.wrapping_mul(2_654_435_761);
            for _ in 0..(seed % 130) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                v.push(x as u8);
            }
            let _ = set_elf_osabi(&mut v, 255);
        }
    }
}
