//! `quest-build image MANIFEST [-o images/NAME.iso]`.

use crate::build::{Progress, Workspace};
use crate::image::{self, ImageError, ImageRequest};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// `quest-build image`.
#[derive(Debug, clap::Args)]
pub struct ImageArgs {
    /// The manifest to build.
    #[arg(value_name = "MANIFEST")]
    pub manifest: PathBuf,
    /// The ISO to write (the ELF goes beside it); default: images/NAME.iso for a manifest named NAME.
    #[arg(short, long, value_name = "ISO")]
    pub output: Option<PathBuf>,
    /// Write only the ELF, no ISO.
    #[arg(long)]
    pub no_iso: bool,
}

/// Prints an image-stage error the way the user can act on it.
pub fn report_error(e: &ImageError) {
    match e {
        ImageError::Manifest(d) => eprint!("{}", d.render(std::io::stderr().is_terminal())),
        other => eprintln!("error: {other}"),
    }
}

/// Builds the image; status 1 on any error.
pub fn run(args: &ImageArgs) -> ExitCode {
    let req = ImageRequest {
        manifest: args.manifest.clone(),
        iso: args.output.clone(),
        make_iso: !args.no_iso,
    };
    match image::build_image(&Workspace::locate(), &req, &Progress::stderr()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            report_error(&e);
            ExitCode::from(1)
        }
    }
}
