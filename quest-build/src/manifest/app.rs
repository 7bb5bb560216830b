//! Is a sandbox's `app` a Cargo package with a binary target? Behind a trait so that
//! validation stays testable without running cargo.

use cargo_metadata::{MetadataCommand, TargetKind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Checks that `dir` holds an application a sandbox can run.
pub trait AppCheck {
    /// `Ok` if `dir` is a Cargo package with a binary target; else why not, in a few words.
    fn check(&self, dir: &Path) -> Result<(), String>;
}

/// The real check: asks `cargo metadata` (without resolving dependencies) about the
/// package in `dir`. Results are cached per directory.
#[derive(Debug, Default)]
pub struct CargoAppCheck {
    cache: Mutex<HashMap<PathBuf, Result<(), String>>>,
}

impl CargoAppCheck {
    /// A checker with an empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn check_uncached(dir: &Path) -> Result<(), String> {
        if !dir.is_dir() {
            return Err("no such directory".into());
        }
        let manifest = dir.join("Cargo.toml");
        if !manifest.is_file() {
            return Err("no Cargo.toml in this directory".into());
        }
        let metadata = MetadataCommand::new()
            .manifest_path(&manifest)
            .no_deps()
            .other_options(["--offline".to_owned()])
            .exec()
            .map_err(|e| format!("cargo metadata failed: {}", first_line(&e.to_string())))?;
        let manifest = manifest.canonicalize().unwrap_or(manifest);
        let package = metadata
            .packages
            .iter()
            .find(|p| {
                let path = p.manifest_path.as_std_path();
                path.canonicalize()
                    .map_or(path == manifest, |p| p == manifest)
            })
            .ok_or("Cargo.toml has no [package] (a workspace root?)")?;
        if package
            .targets
            .iter()
            .any(|t| t.kind.contains(&TargetKind::Bin))
        {
            Ok(())
        } else {
            Err(format!("package `{}` has no binary target", package.name))
        }
    }
}

/// The first meaningful line of cargo's error output (it is often several lines).
fn first_line(text: &str) -> &str {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("`cargo metadata` exited"))
        .map(|l| l.trim_start_matches("error: "))
        .unwrap_or("unknown error")
}

impl AppCheck for CargoAppCheck {
    fn check(&self, dir: &Path) -> Result<(), String> {
        let key = dir.to_path_buf();
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return hit;
        }
        let result = Self::check_uncached(dir);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, result.clone());
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn scratch(name: &str) -> PathBuf {
        let dir = crate::scratch::scratch_dir(&format!("app-check-{name}"));
        fs::create_dir_all(dir.join("src")).unwrap();
        dir
    }

    fn package(dir: &Path, name: &str) {
        fs::write(
            dir.join("Cargo.toml"),
            format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n"),
        )
        .unwrap();
    }

    #[test]
    fn binary_package_passes() {
        let dir = scratch("bin");
        package(&dir, "tiny-bin");
        fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
        assert_eq!(CargoAppCheck::new().check(&dir), Ok(()));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn library_only_package_fails() {
        let dir = scratch("lib");
        package(&dir, "tiny-lib");
        fs::write(dir.join("src/lib.rs"), "").unwrap();
        assert_eq!(
            CargoAppCheck::new().check(&dir),
            Err("package `tiny-lib` has no binary target".into())
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_things_fail() {
        let dir = scratch("none");
        let check = CargoAppCheck::new();
        assert_eq!(
            check.check(&dir),
            Err("no Cargo.toml in this directory".into())
        );
        assert_eq!(
            check.check(&dir.join("nope")),
            Err("no such directory".into())
        );
        fs::write(dir.join("Cargo.toml"), "this is not toml [").unwrap();
        // Cached: the earlier answer for `dir` stands.
        assert_eq!(
            check.check(&dir),
            Err("no Cargo.toml in this directory".into())
        );
        let fresh = CargoAppCheck::new().check(&dir).unwrap_err();
        assert!(fresh.starts_with("cargo metadata failed"), "{fresh}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn first_line_skips_noise() {
        assert_eq!(first_line("\n  error: bad thing\nmore"), "bad thing");
        assert_eq!(first_line(""), "unknown error");
    }
}
