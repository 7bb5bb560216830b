//! `quest-build inspect IMAGE`: the embedded partition table and payload hashes.

use crate::image::inspect;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// `quest-build inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The image ELF (`images/NAME.elf`; for an `.iso`, the `.elf` beside it).
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
}

/// Prints the table; status 1 if it is unreadable, invalid, or a payload hash mismatches.
pub fn run(args: &InspectArgs) -> ExitCode {
    let path = if args.image.extension().is_some_and(|e| e == "iso") {
        args.image.with_extension("elf")
    } else {
        args.image.clone()
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::from(1);
        }
    };
    match inspect::inspect(&bytes) {
        Ok(report) => {
            let _ = write!(std::io::stdout().lock(), "{}", report.text);
            if report.bad_payloads > 0 {
                eprintln!(
                    "error: {}: {} payload(s) do not match their SHA-256; the monitor will refuse this image",
                    path.display(),
                    report.bad_payloads
                );
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::from(1)
        }
    }
}
