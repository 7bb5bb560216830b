//! Scratch directories for unit tests.

use std::path::PathBuf;

/// A fresh, empty directory under the system's temporary directory, unique to `tag` and
/// this test process (whatever an earlier run left there is removed).
pub(crate) fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("quest-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}
