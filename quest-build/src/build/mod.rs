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

/// Where Quest's own sources and build outputs are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    /// The Quest checkout (holds `monitor/`, `unikernels/`, `images/`).
    pub root: PathBuf,
    /// The cargo target directory for applications and the monitor.
    pub target: PathBuf,
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

    /// The checkout at `root`, building into `root/images/target`.
    pub fn at(root: PathBuf) -> Self {
        let target = root.join("images").join("target");
        Self { root, target }
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
