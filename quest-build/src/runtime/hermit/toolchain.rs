//! The Rust toolchain Hermit 0.11 is built with (`nightly-2025-03-15` with `rust-src`
//! for `-Zbuild-std` and `llvm-tools` for the kernel's SMP boot code and our
//! post-processing), installed through rustup when it is missing. Cargo itself runs
//! through [`crate::build::cargo`] with this toolchain's name.
//!
//! Asking rustup costs three process starts per build, most of a no-op image build's
//! time besides cargo's own. So the answer is remembered in the Hermit output directory
//! ([`CACHE_FILE`]) with a fingerprint of the toolchain's files that rustup rewrites
//! whenever it installs, updates or removes the toolchain or a component (size and
//! modification time of `rustc`, `cargo`, the component list and the channel manifest),
//! and with `RUSTUP_HOME`. A cached answer is used only while that fingerprint is the
//! same and the components are still there; otherwise rustup is asked again.

use super::postprocess::LlvmTools;
use super::{HermitDirs, HermitError};
use crate::build::Progress;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;
use xshell::{cmd, Shell};

/// The toolchain hermit-kernel 0.11.0 pins in its `rust-toolchain.toml`.
pub const HERMIT_TOOLCHAIN: &str = "nightly-2025-03-15";
/// Components the builds need.
const COMPONENTS: [&str; 2] = ["rust-src", "llvm-tools"];

/// An installed toolchain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toolchain {
    /// Rustup name (what `RUSTUP_TOOLCHAIN` is set to for cargo).
    pub name: String,
    /// `rustc --print sysroot`.
    pub sysroot: PathBuf,
    /// Its LLVM tools.
    pub llvm: LlvmTools,
}

/// The file under the Hermit output root that remembers the last probe.
pub const CACHE_FILE: &str = "toolchain-probe";

/// The Hermit toolchain, installing it (or its missing components) first if needed;
/// remembered in `dirs` (see the module documentation).
pub fn ensure(dirs: &HermitDirs, progress: &Progress) -> Result<Toolchain, HermitError> {
    let cache = dirs.root.join(CACHE_FILE);
    if let Some(tc) = cached(&cache, HERMIT_TOOLCHAIN) {
        return Ok(tc);
    }
    let (tc, host) = ensure_uncached(progress)?;
    // Best effort: without the file the next build just asks rustup again.
    if let Some(record) = record(&tc, &host) {
        if std::fs::create_dir_all(&dirs.root).is_ok() {
            let _ = std::fs::write(&cache, record);
        }
    }
    Ok(tc)
}

/// The toolchain `name` as remembered in `cache`, if the record is for it and its
/// fingerprint and components are unchanged.
fn cached(cache: &Path, name: &str) -> Option<Toolchain> {
    let text = std::fs::read_to_string(cache).ok()?;
    let mut lines = text.lines();
    let (recorded_name, sysroot, host) = (lines.next()?, lines.next()?, lines.next()?);
    let tc = toolchain_at(recorded_name, PathBuf::from(sysroot), host);
    (recorded_name == name && record(&tc, host)? == text && tc.is_complete()).then_some(tc)
}

/// What [`CACHE_FILE`] holds for `tc`: name, sysroot and host, `RUSTUP_HOME`, then the
/// fingerprint; `None` if the toolchain has no fingerprint (not a rustup-installed
/// channel toolchain), which is then never cached.
fn record(tc: &Toolchain, host: &str) -> Option<String> {
    let mut text = format!(
        "{}\n{}\n{host}\nRUSTUP_HOME={:?}\n",
        tc.name,
        tc.sysroot.to_str()?,
        std::env::var_os("RUSTUP_HOME")
    );
    for file in [
        "bin/rustc",
        "bin/cargo",
        "lib/rustlib/components",
        "lib/rustlib/multirust-channel-manifest.toml",
    ] {
        let meta = std::fs::metadata(tc.sysroot.join(file)).ok()?;
        let mtime = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
        text += &format!("{file} {} {:?}\n", meta.len(), mtime);
    }
    Some(text)
}

/// The toolchain `name` whose `rustc --print sysroot` is `sysroot` on `host`.
fn toolchain_at(name: &str, sysroot: PathBuf, host: &str) -> Toolchain {
    let bin = sysroot.join("lib/rustlib").join(host).join("bin");
    Toolchain {
        name: name.to_owned(),
        llvm: LlvmTools {
            nm: bin.join("llvm-nm"),
            objcopy: bin.join("llvm-objcopy"),
        },
        sysroot,
    }
}

impl Toolchain {
    /// Whether the components the builds need are installed.
    fn is_complete(&self) -> bool {
        let has_src = self
            .sysroot
            .join("lib/rustlib/src/rust/library/std")
            .is_dir();
        has_src && self.llvm.nm.is_file() && self.llvm.objcopy.is_file()
    }
}

/// [`ensure`] without the cache: asks rustup; also returns the host triple.
fn ensure_uncached(progress: &Progress) -> Result<(Toolchain, String), HermitError> {
    let sh = Shell::new().map_err(HermitError::Rustup)?;
    let (present, complete) = probe(&sh, HERMIT_TOOLCHAIN)?;
    if let Some(tc) = complete {
        return Ok(tc);
    }
    let rustup = if present {
        progress.step(
            "Installing",
            format!("rust-src and llvm-tools for {HERMIT_TOOLCHAIN} (for Hermit)"),
        );
        cmd!(
            sh,
            "rustup component add --toolchain {HERMIT_TOOLCHAIN} {COMPONENTS...}"
        )
    } else {
        progress.step(
            "Installing",
            format!("Rust toolchain {HERMIT_TOOLCHAIN} with rust-src and llvm-tools (for Hermit)"),
        );
        let components = COMPONENTS.iter().flat_map(|c| ["--component", c]);
        cmd!(
            sh,
            "rustup toolchain install {HERMIT_TOOLCHAIN} --profile minimal {components...}"
        )
    };
    rustup
        .env_remove("RUSTUP_TOOLCHAIN")
        .run()
        .map_err(HermitError::Rustup)?;
    probe(&sh, HERMIT_TOOLCHAIN)?
        .1
        .ok_or(HermitError::Incomplete(HERMIT_TOOLCHAIN))
}

/// Whether toolchain `name` is installed, and the toolchain (with its host) if it also
/// has every component.
fn probe(
    sh: &Shell,
    name: &'static str,
) -> Result<(bool, Option<(Toolchain, String)>), HermitError> {
    // Ask the list first: `rustup run` may install a missing toolchain on its own, with
    // the wrong profile and without asking.
    let rustup = |args: &[&str]| {
        cmd!(sh, "rustup {args...}")
            .env_remove("RUSTUP_TOOLCHAIN")
            .quiet()
            .ignore_stderr()
            .read()
    };
    let list = rustup(&["toolchain", "list"]).map_err(HermitError::Rustup)?;
    if !list.lines().any(|l| l.starts_with(&format!("{name}-"))) {
        return Ok((false, None));
    }
    let Ok(version) = rustup(&["run", name, "rustc", "-vV"]) else {
        return Ok((false, None));
    };
    let Some(host) = version.lines().find_map(|l| l.strip_prefix("host: ")) else {
        return Err(HermitError::NoHost(name));
    };
    let Ok(sysroot) = rustup(&["run", name, "rustc", "--print", "sysroot"]) else {
        return Ok((false, None));
    };
    let host = host.trim();
    let tc = toolchain_at(name, PathBuf::from(sysroot.trim()), host);
    Ok((true, tc.is_complete().then(|| (tc, host.to_owned()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A fake installed toolchain: what `record` fingerprints and `is_complete` checks.
    fn fake_sysroot(name: &str) -> PathBuf {
        let root = crate::scratch::scratch_dir(&format!("toolchain-{name}"));
        for dir in [
            "bin",
            "lib/rustlib/src/rust/library/std",
            "lib/rustlib/h/bin",
        ] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for file in [
            "bin/rustc",
            "bin/cargo",
            "lib/rustlib/components",
            "lib/rustlib/multirust-channel-manifest.toml",
            "lib/rustlib/h/bin/llvm-nm",
            "lib/rustlib/h/bin/llvm-objcopy",
        ] {
            fs::write(root.join(file), file).unwrap();
        }
        root
    }

    #[test]
    fn a_remembered_toolchain_is_used_until_its_files_change() {
        let sysroot = fake_sysroot("cache");
        let cache = sysroot.join("probe");
        let tc = toolchain_at("tc", sysroot.clone(), "h");
        fs::write(&cache, record(&tc, "h").unwrap()).unwrap();
        assert_eq!(cached(&cache, "tc"), Some(tc.clone()));
        assert_eq!(
            cached(&cache, "other"),
            None,
            "a record for another toolchain"
        );

        // rustup rewrites the component list when a component comes or goes.
        fs::write(sysroot.join("lib/rustlib/components"), "rust-src\n").unwrap();
        assert_eq!(cached(&cache, "tc"), None);
        fs::write(&cache, record(&tc, "h").unwrap()).unwrap();
        assert_eq!(cached(&cache, "tc"), Some(tc.clone()));

        // An updated compiler (same path, other file).
        fs::write(sysroot.join("bin/rustc"), "a newer rustc").unwrap();
        assert_eq!(cached(&cache, "tc"), None);
        fs::write(&cache, record(&tc, "h").unwrap()).unwrap();

        // A component removed behind rustup's back.
        fs::remove_file(sysroot.join("lib/rustlib/h/bin/llvm-nm")).unwrap();
        assert_eq!(cached(&cache, "tc"), None);

        // A toolchain without rustup's manifest has no fingerprint: never cached.
        fs::remove_file(sysroot.join("lib/rustlib/multirust-channel-manifest.toml")).unwrap();
        assert_eq!(record(&tc, "h"), None);
        fs::remove_dir_all(&sysroot).unwrap();
        assert_eq!(cached(&cache, "tc"), None, "an uninstalled toolchain");
    }
}
