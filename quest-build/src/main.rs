//! The `quest-build` command.

fn main() -> std::process::ExitCode {
    quest_build::cli::main()
}
