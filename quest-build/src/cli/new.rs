//! `quest-build new NAME [--runtime hermit|bare]`.

use crate::build::Workspace;
use crate::runtime::Runtime;
use crate::scaffold;
use std::path::PathBuf;
use std::process::ExitCode;

/// `quest-build new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The system's name: its directory, manifest, sandbox and application package.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The runtime of its sandbox.
    #[arg(long, value_enum, default_value_t = RuntimeArg::Hermit)]
    pub runtime: RuntimeArg,
    /// Where to create `NAME/` (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

/// The runtimes `new` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeArg {
    /// An ordinary std program as a Hermit unikernel.
    Hermit,
    /// A `no_std` program on Quest's bare runtime.
    Bare,
}

/// Creates the system; status 1 on any error.
pub fn run(args: &NewArgs) -> ExitCode {
    let runtime = match args.runtime {
        RuntimeArg::Hermit => Runtime::Hermit,
        RuntimeArg::Bare => Runtime::Bare,
    };
    match scaffold::create(&Workspace::locate(), &args.dir, &args.name, runtime) {
        Ok(made) => {
            eprintln!(
                "     Created system `{}` in {} (manifest {}, app {})",
                args.name,
                made.dir.display(),
                made.manifest.display(),
                made.app.display()
            );
            eprintln!(
                "Build and boot it with: quest-build run {}",
                made.manifest.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
