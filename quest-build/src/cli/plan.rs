//! `quest-build plan MANIFEST [--json] [--svg FILE]`: the plan as a report, as JSON, and
//! as a picture.

use super::PlanArgs;
use crate::plan;
use std::io::Write;
use std::process::ExitCode;

/// Plans the manifest and prints the report (or JSON); with `--svg`, also writes the
/// picture. Status 1 if the manifest is invalid or the picture cannot be written.
pub fn run(args: &PlanArgs) -> ExitCode {
    let Some(m) = super::load_manifest(&args.manifest) else {
        return ExitCode::from(1);
    };
    let p = plan::plan(&m);
    let table = match plan::encode_table(&p, None) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}: {e}", args.manifest.display());
            return ExitCode::from(1);
        }
    };
    if let Some(file) = &args.svg {
        if let Err(e) = std::fs::write(file, plan::svg::render(&p)) {
            eprintln!("error: cannot write {}: {e}", file.display());
            return ExitCode::from(1);
        }
        eprintln!("wrote {}", file.display());
    }
    let text = if args.json {
        plan::json::render(&p, &table, &m.base_dir)
    } else {
        plan::report::render(&p, &table, &m.base_dir)
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    ExitCode::SUCCESS
}
