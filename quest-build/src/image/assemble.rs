//! `quest-build image`: manifest -> plan -> applications and monitor built -> every
//! sandbox's initial memory -> partition table -> one multiboot2 ELF -> GRUB ISO.

use super::{embed, iso};
use crate::build::{self, BuildError, Progress, Workspace};
use crate::manifest::{self, Diagnostics};
use crate::plan::{self, Plan, SandboxImage, SandboxPlan, TableError};
use crate::runtime::{self, BuildContext, RuntimeError};
use quest_abi::validate::payload_area_offset;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to build.
#[derive(Clone, Debug)]
pub struct ImageRequest {
    /// The manifest.
    pub manifest: PathBuf,
    /// The ISO to write (default `images/<manifest stem>.iso`); the ELF goes beside it.
    pub iso: Option<PathBuf>,
    /// Also make the ISO (not only the ELF).
    pub make_iso: bool,
}

/// What was built.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    /// The plan it was built from.
    pub plan: Plan,
    /// The multiboot2 ELF.
    pub elf: PathBuf,
    /// The ISO, if requested.
    pub iso: Option<PathBuf>,
    /// Whether the ELF's bytes changed (or it was new).
    pub elf_changed: bool,
    /// Whether the ISO was (re)made.
    pub iso_made: bool,
}

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The manifest is invalid (the diagnostics say why).
    #[error("{} error(s) in the manifest", .0.error_count())]
    Manifest(Box<Diagnostics>),
    /// A build failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A sandbox's runtime could not build its application or prepare its memory.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The partition table could not be made.
    #[error(transparent)]
    Table(#[from] TableError),
    /// The table and payloads could not be embedded in the monitor.
    #[error("embedding the partition table in the monitor: {0}")]
    Embed(#[from] embed::EmbedError),
    /// The ISO could not be made.
    #[error(transparent)]
    Iso(#[from] iso::IsoError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The ISO and ELF paths for a request: `images/<stem>.iso` and `.elf` beside it.
pub fn output_paths(ws: &Workspace, req: &ImageRequest) -> (PathBuf, PathBuf) {
    let iso = req.iso.clone().unwrap_or_else(|| {
        let stem = req
            .manifest
            .file_stem()
            .map_or_else(|| "quest".into(), |s| s.to_string_lossy().into_owned());
        ws.images().join(format!("{stem}.iso"))
    });
    (iso.with_extension("elf"), iso)
}

/// The blob embedded in the monitor: the table, then the payload area at its aligned
/// offset (see `embed`).
pub fn blob(table: &[u8], payload_area: &[u8]) -> Vec<u8> {
    let at = payload_area_offset(table.len() as u32) as usize;
    let mut blob = table.to_vec();
    blob.resize(at, 0);
    blob.extend_from_slice(payload_area);
    blob
}

/// Builds everything `req` asks for.
pub fn build_image(
    ws: &Workspace,
    req: &ImageRequest,
    progress: &Progress,
) -> Result<BuiltImage, ImageError> {
    let started = Instant::now();
    let m = manifest::load(&req.manifest).map_err(|d| ImageError::Manifest(Box::new(d)))?;
    let plan = plan::plan(&m);

    let monitor_path = build::build_monitor(ws, progress)?;
    // Each application is built once per runtime (and build variant: a Hermit kernel
    // configuration), however many sandboxes run it.
    let ctx = BuildContext { ws, progress };
    let key = |sb: &'_ SandboxPlan| {
        let rt = runtime::of(sb.runtime);
        (rt.name(), rt.build_variant(sb), sb.app_dir.clone())
    };
    let mut apps: BTreeMap<(&str, &str, PathBuf), Vec<u8>> = BTreeMap::new();
    for sb in &plan.sandboxes {
        let rt = runtime::of(sb.runtime);
        if let std::collections::btree_map::Entry::Vacant(slot) = apps.entry(key(sb)) {
            let exe = rt.build_app(&ctx, sb)?;
            slot.insert(std::fs::read(&exe).map_err(io(&exe))?);
        }
    }

    let (elf_path, iso_path) = output_paths(ws, req);
    progress.step("Building", format!("image {}", elf_path.display()));
    let images = plan
        .sandboxes
        .iter()
        .enumerate()
        .map(|(i, sb)| {
            let rt = runtime::of(sb.runtime);
            rt.initial_memory(&plan, i, &apps[&key(sb)])
        })
        .collect::<Result<Vec<SandboxImage>, _>>()?;
    let encoded = plan::encode_table(&plan, Some(&images))?;
    let monitor = std::fs::read(&monitor_path).map_err(io(&monitor_path))?;
    let elf = embed::embed(&monitor, &blob(&encoded.table, &encoded.payload_area))?;

    // Rewrite the ELF only when its bytes change, so its timestamp means something.
    let elf_changed = std::fs::read(&elf_path).map_or(true, |old| old != elf);
    if elf_changed {
        if let Some(dir) = elf_path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::write(&elf_path, &elf).map_err(io(&elf_path))?;
    }
    let mut iso_made = false;
    if req.make_iso {
        progress.step("Packaging", format!("ISO {}", iso_path.display()));
        iso_made = iso::make_iso(&elf_path, &iso_path, &plan.system_name)?;
    }
    let what = if req.make_iso { &iso_path } else { &elf_path };
    progress.step(
        "Finished",
        format!(
            "{} in {:.2}s{}",
            what.display(),
            started.elapsed().as_secs_f64(),
            if elf_changed || iso_made {
                ""
            } else {
                " (up to date)"
            }
        ),
    );
    Ok(BuiltImage {
        plan,
        elf: elf_path,
        iso: req.make_iso.then_some(iso_path),
        elf_changed,
        iso_made,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_area_starts_on_its_aligned_offset() {
        let b = blob(&[1, 2, 3], &[9; 4096]);
        assert_eq!(b.len(), 4096 + 4096);
        assert_eq!(&b[..3], &[1, 2, 3]);
        assert!(b[3..4096].iter().all(|&x| x == 0));
        assert!(b[4096..].iter().all(|&x| x == 9));
    }

    #[test]
    fn outputs_default_to_images_named_after_the_manifest() {
        let ws = Workspace::at(PathBuf::from("/q"));
        let req = ImageRequest {
            manifest: PathBuf::from("partition-manifests/hello.toml"),
            iso: None,
            make_iso: true,
        };
        assert_eq!(
            output_paths(&ws, &req),
            (
                PathBuf::from("/q/images/hello.elf"),
                PathBuf::from("/q/images/hello.iso")
            )
        );
        let req = ImageRequest {
            iso: Some(PathBuf::from("out/x.iso")),
            ..req
        };
        assert_eq!(output_paths(&ws, &req).0, PathBuf::from("out/x.elf"));
    }
}
