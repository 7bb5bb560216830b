//! `quest-build check MANIFEST...`: every diagnostic of every manifest.

use super::CheckArgs;
use crate::{manifest, plan};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Checks each manifest (all of them, even after a failure): prints its diagnostics, or
/// `ok: FILE: N sandboxes, M channels`. Status 1 if any is invalid.
pub fn run(args: &CheckArgs) -> ExitCode {
    let color = std::io::stderr().is_terminal();
    let mut invalid = 0usize;
    let mut out = std::io::stdout().lock();
    for path in &args.manifests {
        let m = match manifest::load(path) {
            Ok(m) => m,
            Err(diagnostics) => {
                let _ = out.flush();
                eprint!("{}", diagnostics.render(color));
                invalid += 1;
                continue;
            }
        };
        // A manifest that validates always plans to a valid table; if not, that is a
        // bug in Quest, but the manifest cannot be used either.
        if let Err(e) = plan::encode_table(&plan::plan(&m), None) {
            let _ = out.flush();
            eprintln!("error: {}: {e}", path.display());
            invalid += 1;
            continue;
        }
        let _ = writeln!(
            out,
            "ok: {}: {}, {}",
            path.display(),
            plural(m.sandboxes.len(), "sandbox", "sandboxes"),
            plural(m.channels.len(), "channel", "channels")
        );
    }
    let _ = out.flush();
    if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        if args.manifests.len() > 1 {
            eprintln!(
                "{invalid} of {} manifests are invalid",
                args.manifests.len()
            );
        }
        ExitCode::from(1)
    }
}
