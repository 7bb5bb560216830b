//! The build-time rows of `quest-build bench`, for the whole image of the manifest:
//!
//! - cold: every output (monitor, applications, Hermit kernel and standard library)
//!   built from scratch in a fresh output directory of its own; the kernel's source comes
//!   from cargo's registry cache, so no download is timed;
//! - no-op: the same image again with everything cached;
//! - one app edited: the first sandbox's `src/main.rs` touched (its modification time set
//!   to now, so cargo recompiles that package as after an edit), then the image rebuilt.

use super::bench::secs;
use super::bench_hermit::Rows;
use crate::build::{Progress, Workspace};
use crate::image::{self, BuiltImage, ImageRequest};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

/// Builds the image into `ws`'s output directories; returns how long it took.
pub fn timed_build(ws: &Workspace, req: &ImageRequest) -> Result<(Duration, BuiltImage), String> {
    let started = Instant::now();
    let built = image::build_image(ws, req, &Progress::quiet()).map_err(|e| match e {
        image::ImageError::Manifest(d) => d.render(false),
        other => other.to_string(),
    })?;
    Ok((started.elapsed(), built))
}

/// The cold (unless `cold` is false), no-op and one-app-edited build rows, and the image
/// built last.
pub fn build_rows(
    ws: &Workspace,
    req: &ImageRequest,
    cold: bool,
    progress: &Progress,
) -> Result<(Rows, BuiltImage), String> {
    let mut rows = Vec::new();
    if cold {
        let scratch = ws.images().join("bench").join("cold");
        let _ = std::fs::remove_dir_all(&scratch);
        progress.step("Measuring", "cold image build (nothing cached)");
        let (took, _) = timed_build(&ws.with_outputs_in(&scratch), req)?;
        rows.push((
            "cold image build (monitor + apps + Hermit kernel and std + image + ISO)".into(),
            secs(took),
        ));
        let _ = std::fs::remove_dir_all(&scratch);
    }
    progress.step("Measuring", "no-op build");
    let (_, built) = timed_build(ws, req)?;
    let (noop, _) = timed_build(ws, req)?;
    rows.push(("no-op image build".into(), secs(noop)));

    if let Some(sb) = built.plan.sandboxes.first() {
        progress.step(
            "Measuring",
            format!("rebuild after editing app of `{}`", sb.name),
        );
        touch(&sb.app_dir.join("src").join("main.rs"))?;
        let (edited, _) = timed_build(ws, req)?;
        rows.push((
            format!(
                "image rebuild after editing one app (`{}`, {})",
                sb.name,
                crate::runtime::of(sb.runtime).name()
            ),
            secs(edited),
        ));
    }
    Ok((rows, built))
}

/// Sets `file`'s modification time to now, as an editor saving it would.
fn touch(file: &Path) -> Result<(), String> {
    std::fs::File::options()
        .write(true)
        .open(file)
        .and_then(|f| f.set_modified(SystemTime::now()))
        .map_err(|e| format!("touching {}: {e}", file.display()))
}
