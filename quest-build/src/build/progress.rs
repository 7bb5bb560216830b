//! Cargo-style progress lines on stderr: a right-aligned, bold green verb, then what.
//!
//! ```text
//!    Compiling app hello-bare
//!     Building image images/hello.elf
//!     Finished images/hello.iso in 3.2s
//! ```

use std::io::{IsTerminal, Write};

/// Prints progress lines (or nothing, when quiet).
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    quiet: bool,
    color: bool,
}

impl Progress {
    /// Progress on stderr, in color when stderr is a terminal.
    pub fn stderr() -> Self {
        Self {
            quiet: false,
            color: std::io::stderr().is_terminal(),
        }
    }

    /// No progress output.
    pub fn quiet() -> Self {
        Self {
            quiet: true,
            color: false,
        }
    }

    /// One line: `verb` right-aligned to 12 columns, then `what`.
    pub fn step(&self, verb: &str, what: impl std::fmt::Display) {
        if self.quiet {
            return;
        }
        let line = format_step(verb, &what.to_string(), self.color);
        // Progress that cannot be shown is not worth failing the build for.
        let _ = writeln!(std::io::stderr(), "{line}");
    }

    /// A warning line (`warning: ...`, yellow on a terminal).
    pub fn warn(&self, what: impl std::fmt::Display) {
        if self.quiet {
            return;
        }
        let line = if self.color {
            format!("\x1b[1;33mwarning\x1b[0m: {what}")
        } else {
            format!("warning: {what}")
        };
        let _ = writeln!(std::io::stderr(), "{line}");
    }
}

/// Formats one progress line.
pub fn format_step(verb: &str, what: &str, color: bool) -> String {
    if color {
        format!("\x1b[1;32m{verb:>12}\x1b[0m {what}")
    } else {
        format!("{verb:>12} {what}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_right_aligned_like_cargo() {
        assert_eq!(
            format_step("Compiling", "app hello-bare", false),
            "   Compiling app hello-bare"
        );
        assert_eq!(
            format_step("Finished", "x", true),
            "\x1b[1;32m    Finished\x1b[0m x"
        );
    }
}
