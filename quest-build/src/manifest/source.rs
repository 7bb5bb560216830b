//! A manifest's bytes to its text: TOML is UTF-8, and a file that is not gets located
//! diagnostics (`file:line:col` of each invalid byte) like every other error.

use super::diag::{Diagnostic, Diagnostics};
use std::path::Path;

/// The text of the manifest at `path` whose bytes are `bytes`, or one diagnostic per
/// invalid UTF-8 sequence. The diagnostics are rendered over the text with each invalid
/// sequence shown as U+FFFD, so line and column count characters as an editor does.
pub fn decode(path: &Path, bytes: Vec<u8>) -> Result<String, Diagnostics> {
    let bytes = match String::from_utf8(bytes) {
        Ok(text) => return Ok(text),
        Err(e) => e.into_bytes(),
    };
    let mut text = String::with_capacity(bytes.len() + 16);
    let mut items = Vec::new();
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        let invalid = chunk.invalid();
        if invalid.is_empty() {
            continue;
        }
        let at = text.len();
        text.push(char::REPLACEMENT_CHARACTER);
        let shown: Vec<String> = invalid.iter().map(|b| format!("0x{b:02x}")).collect();
        items.push(
            Diagnostic::error(
                format!(
                    "the manifest is not valid UTF-8: invalid byte sequence {}",
                    shown.join(" ")
                ),
                at..text.len(),
            )
            .label("not UTF-8")
            .hint(
                "manifests are TOML, which is UTF-8 text: re-save the file as UTF-8 \
                 (e.g. `iconv -f latin1 -t utf-8 old.toml > new.toml`)",
            ),
        );
    }
    let mut diags = Diagnostics::new(path, &text);
    diags.items = items;
    Err(diags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_passes_through() {
        let text = decode(Path::new("m.toml"), "name = \"é\"\n".into()).expect("valid");
        assert_eq!(text, "name = \"é\"\n");
    }

    #[test]
    fn each_invalid_sequence_is_located_by_line_and_character_column() {
        let bytes = b"[system]\nname = \"caf\xe9 \xff\"\ncores = 1\nx = \"\xc3\"\n".to_vec();
        let d = decode(Path::new("dir/m.toml"), bytes).expect_err("invalid");
        assert_eq!(d.error_count(), 3);
        let out = d.render(false);
        assert!(out.contains(" --> dir/m.toml:2:12\n"), "{out}");
        assert!(out.contains(" --> dir/m.toml:2:14\n"), "{out}");
        assert!(out.contains(" --> dir/m.toml:4:6\n"), "{out}");
        assert!(out.contains("invalid byte sequence 0xe9"), "{out}");
        assert!(out.contains("invalid byte sequence 0xc3"), "{out}");
        assert!(out.contains("= help: manifests are TOML"), "{out}");
        assert!(out.contains("due to 3 previous errors"), "{out}");
    }
}
