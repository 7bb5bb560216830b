//! A minimal reader for Unix `ar` archives (the GNU/SysV format rustc and LLVM write),
//! used to set the ELF OS/ABI byte of every object member in place.
//!
//! Format: the magic `!<arch>\n`, then members, each a 60-byte ASCII header (fields and
//! their widths: name 16, mtime 12, uid 6, gid 6, mode 8, size 10, then the two bytes
//! ``"`\n"``) followed by `size` bytes of data
//! and one padding byte when `size` is odd. BSD archives store a long name at the start
//! of the data (`#1/<len>` names); that is skipped to find the member's contents.

/// The archive magic.
const MAGIC: &[u8] = b"!<arch>\n";
/// Size of a member header.
const HEADER: usize = 60;
/// Index of `EI_OSABI` in an ELF identification.
const EI_OSABI: usize = 7;
/// ELF magic.
const ELF_MAGIC: &[u8] = b"\x7fELF";

/// Why an archive cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArchiveError {
    /// It does not start with `!<arch>\n`.
    #[error("not an ar archive (bad magic)")]
    Magic,
    /// A member header is cut off or malformed.
    #[error("malformed ar member header at byte {0}")]
    Header(usize),
    /// A member extends past the end of the archive.
    #[error("ar member at byte {0} extends past the end of the archive")]
    Truncated(usize),
}

/// One member: where its header and its contents are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Name field as written (trimmed), e.g. `/`, `//`, `foo.o/`, `/123`, `#1/20`.
    pub name: String,
    /// Byte range of the member's contents (after a BSD long name) in the archive.
    pub data: core::ops::Range<usize>,
}

/// Every member of `archive`, in order.
pub fn members(archive: &[u8]) -> Result<Vec<Member>, ArchiveError> {
    if !archive.starts_with(MAGIC) {
        return Err(ArchiveError::Magic);
    }
    let mut out = Vec::new();
    let mut at = MAGIC.len();
    while at < archive.len() {
        // A trailing newline may pad an archive; anything longer must be a header.
        if archive.len() - at == 1 && archive[at] == b'\n' {
            break;
        }
        let header = archive
            .get(at..at + HEADER)
            .ok_or(ArchiveError::Header(at))?;
        if &header[58..60] != b"`\n" {
            return Err(ArchiveError::Header(at));
        }
        let field = |r: core::ops::Range<usize>| {
            core::str::from_utf8(&header[r])
                .map(str::trim_end)
                .map_err(|_| ArchiveError::Header(at))
        };
        let name = field(0..16)?.to_owned();
        let size: usize = field(48..58)?
            .parse()
            .map_err(|_| ArchiveError::Header(at))?;
        let start = at + HEADER;
        let end = start.checked_add(size).ok_or(ArchiveError::Truncated(at))?;
        if end > archive.len() {
            return Err(ArchiveError::Truncated(at));
        }
        let long_name = match name.strip_prefix("#1/") {
            Some(n) => n.parse::<usize>().map_err(|_| ArchiveError::Header(at))?,
            None => 0,
        };
        if long_name > size {
            return Err(ArchiveError::Header(at));
        }
        out.push(Member {
            name,
            data: start + long_name..end,
        });
        at = end + (size & 1);
    }
    Ok(out)
}

/// Sets `EI_OSABI` to `osabi` in every ELF member of `archive`, in place; returns how
/// many members were changed or already had it.
pub fn set_elf_osabi(archive: &mut [u8], osabi: u8) -> Result<usize, ArchiveError> {
    let mut count = 0;
    for m in members(archive)? {
        let data = &mut archive[m.data];
        if data.len() > EI_OSABI && data.starts_with(ELF_MAGIC) {
            data[EI_OSABI] = osabi;
            count += 1;
        }
    }
    Ok(count)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An archive of `(name, contents)` members, written the GNU way.
    pub(crate) fn archive(members: &[(&str, &[u8])]) -> Vec<u8> {
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
            assert_eq!(header.len(), HEADER);
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
        let ms = members(&bytes).unwrap();
        assert_eq!(ms.len(), 4);
        assert_eq!(bytes[ms[1].data.start + EI_OSABI], 255);
        assert_eq!(bytes[ms[2].data.start + EI_OSABI], 255);
        assert_eq!(&bytes[ms[3].data.clone()], text);
        assert_eq!(&bytes[ms[0].data.clone()], symtab);
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
        let mut bytes = archive(&[("#1/20", &data)]);
        assert_eq!(set_elf_osabi(&mut bytes, 255).unwrap(), 1);
        let m = &members(&bytes).unwrap()[0];
        assert_eq!(bytes[m.data.start..m.data.start + 4], *ELF_MAGIC);
        assert_eq!(bytes[m.data.start + EI_OSABI], 255);
    }

    #[test]
    fn malformed_archives_are_errors_not_panics() {
        assert_eq!(members(b"hello"), Err(ArchiveError::Magic));
        let good = archive(&[("a.o/", &elf(0, 64))]);
        // Cut anywhere inside the member: an error, never a panic.
        for cut in MAGIC.len() + 1..good.len() {
            assert!(members(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_size = good.clone();
        bad_size[MAGIC.len() + 48..MAGIC.len() + 58].copy_from_slice(b"99999999  ");
        assert_eq!(members(&bad_size), Err(ArchiveError::Truncated(8)));
        let mut bad_fmag = good.clone();
        bad_fmag[MAGIC.len() + 58] = b'x';
        assert_eq!(members(&bad_fmag), Err(ArchiveError::Header(8)));
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
