//! Building what goes into an image: every application with `cargo` (release, for
//! `x86_64-unknown-none`), and the monitor. Cargo's own fingerprints are the cache: a
//! rebuild with nothing changed compiles nothing. Outputs live under `images/target/`.

pub mod cargo;
pub mod progress;

pub use cargo::{build_app, build_monitor, BuildError};
pub use progress::Progress;

use std::path::{Path, PathBuf};

/// The bare-metal target every bare application and the monitor are built for.
pub const BARE_TARGET: &str = "x86_64-unknown-none";

/// Where Quest's own sources and build outputs are: the one place that finds the
/// checkout. Every output directory (cargo's target directory, the Hermit kernel and its
/// applications) is derived from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    /// The Quest checkout (holds `monitor/`, `unikernels/`, `images/`).
    pub root: PathBuf,
    /// The cargo target directory for bare applications and the monitor.
    pub target: PathBuf,
    /// Hermit's outputs: its kernel, the kernel's source wrapper, and std applications.
    pub hermit: PathBuf,
}

impl Workspace {
    /// The Quest checkout this tool was built from, or `$QUEST_ROOT` if set.
    pub fn locate() -> Self {
        let root = match std::env::var_os("QUEST_ROOT") {
            Some(dir) => PathBuf::from(dir),
            // quest-build lives at <root>/quest-build.
            None => Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        };
        Self::at(root)
    }

    /// The checkout at `root`, building into `root/images/`.
    pub fn at(root: PathBuf) -> Self {
        let images = root.join("images");
        Self {
            target: images.join("target"),
            hermit: images.join("hermit"),
            root,
        }
    }

    /// The same checkout with every build output under `dir` instead (nothing cached
    /// there yet: a cold build).
    pub fn with_outputs_in(&self, dir: &Path) -> Self {
        Self {
            root: self.root.clone(),
            target: dir.join("target"),
            hermit: dir.join("hermit"),
        }
    }

    /// `images/`: every build output.
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    /// The cargo target directory for applications and the monitor (`images/target/`
    /// unless changed).
    pub fn target_dir(&self) -> PathBuf {
        self.target.clone()
    }

    /// The monitor's package directory.
    pub fn monitor_dir(&self) -> PathBuf {
        self.root.join("monitor")
    }
}
