//! Command-line interface. Exit status: 0 ok, 1 invalid input or failed run, 2 usage.

pub mod bench;
pub mod bench_build;
pub mod bench_channels;
pub mod bench_devices;
pub mod bench_hermit;
pub mod bench_migration;
pub mod bench_size;
pub mod bench_web;
pub mod bounds;
pub mod check;
pub mod help;
pub mod image;
pub mod inspect;
pub mod new;
pub mod plan;
pub mod run;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Builds partition manifests into bootable Quest multikernel images.
#[derive(Debug, Parser)]
#[command(name = "quest-build", version, about, long_about = None, after_long_help = help::TOP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check manifests and print every diagnostic.
    #[command(after_long_help = help::CHECK)]
    Check(CheckArgs),
    /// Print the plan of a manifest: cores, memory maps, channels, table.
    #[command(after_long_help = help::PLAN)]
    Plan(PlanArgs),
    /// Build every application and the monitor into one bootable image (ELF and ISO).
    #[command(after_long_help = help::IMAGE)]
    Image(image::ImageArgs),
    /// Boot a manifest or image in an emulator and stream its console.
    #[command(after_long_help = help::RUN)]
    Run(run::RunArgs),
    /// Print the worst-case latency of one message on each channel, term by term.
    #[command(after_long_help = help::BOUNDS)]
    Bounds(bounds::BoundsArgs),
    /// Print the partition table and payload hashes embedded in an image.
    #[command(after_long_help = help::INSPECT)]
    Inspect(inspect::InspectArgs),
    /// Print the benchmark table: sizes, build times, boot cost.
    #[command(after_long_help = help::BENCH)]
    Bench(bench::BenchArgs),
    /// Create a new system: a manifest and an application package that build and boot.
    #[command(after_long_help = help::NEW)]
    New(new::NewArgs),
}

/// `quest-build check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Manifest files to check.
    #[arg(required = true, value_name = "MANIFEST")]
    pub manifests: Vec<std::path::PathBuf>,
}

/// `quest-build plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The manifest to plan.
    #[arg(value_name = "MANIFEST")]
    pub manifest: std::path::PathBuf,
    /// Print the plan as JSON instead of a report.
    #[arg(long)]
    pub json: bool,
    /// Also draw the partitioning as an SVG picture into FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
}

/// Loads a manifest, or prints every diagnostic to stderr (in colour on a terminal) and
/// gives `None`: what every command that takes a manifest does first.
pub fn load_manifest(path: &std::path::Path) -> Option<crate::manifest::Manifest> {
    use std::io::IsTerminal;
    crate::manifest::load(path)
        .map_err(|d| eprint!("{}", d.render(std::io::stderr().is_terminal())))
        .ok()
}

/// Runs the command line and returns the process status.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Image(args) => image::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Bounds(args) => bounds::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::New(args) => new::run(&args),
    }
}
