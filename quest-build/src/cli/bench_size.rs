//! What takes the space in the monitor: the bytes its ELF loads, grouped by the crate
//! each symbol comes from (the first path segment of its Rust name), largest first.
//! Symbols of sections without file contents (`.bss`) are not loaded and not counted;
//! what no sized symbol covers (padding, literal pools, assembly without sizes) is shown
//! as "other".

use goblin::elf::section_header::SHT_NOBITS;
use goblin::elf::sym::{STT_FUNC, STT_OBJECT};
use goblin::elf::{program_header::PT_LOAD, Elf};
use std::collections::BTreeMap;

/// Bytes one crate contributes to the loaded image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrateSize {
    /// Crate name (`core`, `sha2`, `quest_monitor`, ...) or `(no Rust path)` for
    /// unmangled symbols (`#[no_mangle]` functions, assembly labels with a size).
    pub name: String,
    /// Sum of its symbols' sizes.
    pub bytes: u64,
    /// Number of its symbols.
    pub symbols: usize,
}

/// The loaded size of `elf` (every `PT_LOAD` segment's file part) and the symbol bytes
/// inside it by crate, largest first (ties by name).
pub fn size_by_crate(elf: &[u8]) -> Result<(u64, Vec<CrateSize>), String> {
    let elf = Elf::parse(elf).map_err(|e| format!("not an ELF file: {e}"))?;
    let loaded = elf
        .program_headers
        .iter()
        .filter(|p| p.p_type == PT_LOAD)
        .map(|p| p.p_filesz)
        .sum();
    let mut by_crate: BTreeMap<String, (u64, usize)> = BTreeMap::new();
    for sym in elf.syms.iter() {
        let kind = sym.st_type();
        if sym.st_size == 0 || (kind != STT_FUNC && kind != STT_OBJECT) {
            continue;
        }
        let in_file = elf
            .section_headers
            .get(sym.st_shndx)
            .is_some_and(|s| s.sh_type != SHT_NOBITS && s.sh_addr != 0);
        if !in_file {
            continue;
        }
        let name = elf.strtab.get_at(sym.st_name).unwrap_or("");
        let entry = by_crate.entry(crate_of(name).to_owned()).or_default();
        entry.0 += sym.st_size;
        entry.1 += 1;
    }
    let mut sizes: Vec<CrateSize> = by_crate
        .into_iter()
        .map(|(name, (bytes, symbols))| CrateSize {
            name,
            bytes,
            symbols,
        })
        .collect();
    sizes.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.name.cmp(&b.name)));
    Ok((loaded, sizes))
}

/// The crate a symbol name belongs to: the first path segment of a legacy-mangled
/// (`_ZN4core3fmt5write17h..E`) or v0-mangled (`_RNvCs..._4core...`) Rust name, the
/// trait impl's self type's crate for `<T as Trait>` items (`_ZN..$LT$alloc..vec..`),
/// and `(no Rust path)` for anything else.
pub fn crate_of(symbol: &str) -> &str {
    const NONE: &str = "(no Rust path)";
    if let Some(rest) = symbol.strip_prefix("_ZN") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let Ok(len) = rest[..digits].parse::<usize>() else {
            return NONE;
        };
        let Some(segment) = rest.get(digits..digits + len) else {
            return NONE;
        };
        // `<T as Trait>::f` is `_$LT$T$u20$as$u20$Trait$GT$`; `<T>::f` is `_$LT$T$GT$`.
        let segment = segment.strip_prefix('_').unwrap_or(segment);
        let segment = segment.strip_prefix("$LT$").unwrap_or(segment);
        let end = [segment.find(".."), segment.find('$')]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(segment.len());
        return if end == 0 { NONE } else { &segment[..end] };
    }
    if let Some(rest) = symbol.strip_prefix("_R") {
        // v0: the crate root is `C`, an optional disambiguator `s<base62>_`, then
        // `<len><ident>`; take the first one.
        let Some(at) = rest.find('C') else {
            return NONE;
        };
        let mut tail = &rest[at + 1..];
        if let Some(after_s) = tail.strip_prefix('s') {
            if let Some(underscore) = after_s.find('_') {
                tail = &after_s[underscore + 1..];
            }
        }
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        let len = tail[..digits].parse::<usize>().unwrap_or(0);
        return tail
            .get(digits..digits + len)
            .filter(|s| !s.is_empty())
            .unwrap_or(NONE);
    }
    NONE
}

/// The bench rows: the largest `top` crates, then the rest and what no symbol covers.
pub fn rows(elf: &[u8], top: usize) -> Vec<(String, String)> {
    let (loaded, sizes) = match size_by_crate(elf) {
        Ok(s) => s,
        Err(e) => return vec![("monitor size by crate".into(), e)],
    };
    let kib = |b: u64| format!("{:.1} KiB", b as f64 / 1024.0);
    let attributed: u64 = sizes.iter().map(|c| c.bytes).sum();
    let mut parts: Vec<String> = sizes
        .iter()
        .take(top)
        .map(|c| format!("{} {}", c.name, kib(c.bytes)))
        .collect();
    let rest: u64 = sizes.iter().skip(top).map(|c| c.bytes).sum();
    if rest > 0 {
        parts.push(format!("{} more crates {}", sizes.len() - top, kib(rest)));
    }
    parts.push(format!("other {}", kib(loaded.saturating_sub(attributed))));
    vec![(
        format!(
            "monitor loaded size by crate (symbol sizes, top {top} of {})",
            kib(loaded)
        ),
        parts.join(", "),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_is_the_first_path_segment() {
        assert_eq!(crate_of("_ZN4core3fmt5write17h0123456789abcdefE"), "core");
        assert_eq!(
            crate_of("_ZN13quest_monitor4boot3run17h0123456789abcdefE"),
            "quest_monitor"
        );
        let impl_segment = "_$LT$alloc..vec..Vec$LT$T$GT$$u20$as$u20$core..ops..drop..Drop$GT$";
        let impl_symbol = format!("_ZN{}{impl_segment}4drop17h01E", impl_segment.len());
        assert_eq!(crate_of(&impl_symbol), "alloc");
        assert_eq!(crate_of("_ZN4sha24sha26x8617h0123E"), "sha2");
        assert_eq!(crate_of("_RNvCs1234_7mycrate3foo"), "mycrate");
        assert_eq!(crate_of("_RNvNtCs1234_4core3fmt5write"), "core");
        assert_eq!(crate_of("memcpy"), "(no Rust path)");
        assert_eq!(crate_of("_ZN99x"), "(no Rust path)");
        assert_eq!(crate_of(""), "(no Rust path)");
    }

    /// This test binary is an ELF with a symbol table: its own crate and `std` show up,
    /// sorted, and nothing counted exceeds what it loads.
    #[test]
    fn groups_a_real_elf_by_crate() {
        let exe = std::env::current_exe().unwrap();
        let bytes = std::fs::read(&exe).unwrap();
        let (loaded, sizes) = size_by_crate(&bytes).unwrap();
        assert!(loaded > 0);
        let names: Vec<&str> = sizes.iter().map(|c| c.name.as_str()).collect();
        assert!(names.contains(&"quest_build"), "{names:?}");
        assert!(names.contains(&"std"), "{names:?}");
        assert!(sizes.windows(2).all(|w| w[0].bytes >= w[1].bytes));
        assert!(sizes.iter().all(|c| c.bytes > 0 && c.symbols > 0));
        let row = rows(&bytes, 3);
        assert_eq!(row.len(), 1);
        assert!(row[0].1.starts_with(&sizes[0].name), "{row:?}");
        assert!(row[0].1.contains("more crates"), "{row:?}");
    }

    #[test]
    fn not_an_elf_is_an_error_row() {
        assert!(size_by_crate(b"nope").is_err());
        assert_eq!(rows(b"nope", 3).len(), 1);
    }
}
