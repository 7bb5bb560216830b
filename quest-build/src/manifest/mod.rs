//! Partition manifests: parsing (with spans), validation (all errors at once) and
//! diagnostics (`file:line:col`, the source line, a caret, a hint).
//!
//! - [`types`]: the model ([`Manifest`]) every later stage uses.
//! - `parse`: TOML text to a draft (syntax, keys, types, value formats).
//! - `schema`: each key of each table, described once (the model structs, the drafts, the
//!   accepted keys and their reading all derive from it).
//! - [`validate`]: the draft's meaning (cores, memory, channels, ports, apps).
//! - [`diag`]: diagnostics and their rendering.
//! - [`size`]: sizes, numbers and port ranges.
//! - [`pci`]: PCI addresses and IDs (`"00:03.0"`, `"1234:11e8"`).
//! - [`budget`]: host memory a system needs (shared with the planner).
//! - [`app`]: whether an `app` is a Cargo package with a binary.
//! - [`source`]: the file's bytes to text (invalid UTF-8 is a located error).
//!
//! The language itself is documented in `partition-manifests/README.md`.

pub mod app;
pub mod budget;
pub mod diag;
mod parse;
pub mod pci;
mod schema;
pub mod size;
pub mod source;
pub mod types;
pub mod validate;

#[cfg(test)]
mod tests;

pub use app::{AppCheck, CargoAppCheck};
pub use budget::{host_memory_needed, monitor_reserve};
pub use diag::{Diagnostic, Diagnostics, Severity};
pub use types::*;

use parse::Draft;
use std::path::Path;

/// Reads, parses and validates the manifest at `path`, checking every `app` with cargo.
/// A file that cannot be read, or is not UTF-8, is reported as a diagnostic too.
pub fn load(path: &Path) -> Result<Manifest, Diagnostics> {
    match std::fs::read(path) {
        Ok(bytes) => parse_and_validate(path, &source::decode(path, bytes)?, &CargoAppCheck::new()),
        Err(e) => {
            let mut diags = Diagnostics::new(path, "");
            diags.push(
                Diagnostic::file_error(format!("cannot read `{}`: {e}", path.display()))
                    .hint("check the path of the manifest"),
            );
            Err(diags)
        }
    }
}

/// Parses and validates `source` (the text of the manifest at `path`; `app` paths are
/// relative to its directory). Returns every problem at once, in source order.
pub fn parse_and_validate(
    path: &Path,
    source: &str,
    apps: &dyn AppCheck,
) -> Result<Manifest, Diagnostics> {
    let base_dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut items = Vec::new();
    let draft = parse::parse(source, &mut items);
    if let Some(draft) = &draft {
        validate::validate(draft, &base_dir, apps, &mut items);
    }
    let mut diags = Diagnostics::new(path, source);
    diags.items = items;
    diags.sort();
    if diags.has_errors() {
        return Err(diags);
    }
    match draft.and_then(Draft::complete) {
        Some((system, sandboxes, channels)) => Ok(Manifest {
            path: path.to_path_buf(),
            base_dir,
            source: source.to_owned(),
            system,
            sandboxes,
            channels,
        }),
        // Unreachable by construction (a missing piece always has its diagnostic); still
        // an error, never a panic.
        None => {
            diags.push(Diagnostic::file_error("incomplete manifest"));
            Err(diags)
        }
    }
}
