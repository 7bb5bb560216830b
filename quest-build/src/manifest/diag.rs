//! Diagnostics: every problem found in a manifest, each with where it is, rendered the way
//! cargo and rustc do (`error: ...`, ` --> file:line:col`, the source line with a caret,
//! `= help: ...`).

use super::types::Span;
use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The manifest is rejected.
    Error,
    /// Worth knowing; the manifest is still accepted.
    Warning,
}

/// One problem in a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// How bad it is.
    pub severity: Severity,
    /// What is wrong, in one line, e.g. ``unknown key `coers` in `[system]` ``.
    pub message: String,
    /// The text it is about (`None`: the file as a whole, e.g. it could not be read).
    pub span: Option<Span>,
    /// A short note printed next to the caret.
    pub label: Option<String>,
    /// How to fix it (`= help: ...`).
    pub hint: Option<String>,
    /// Other places that explain it (`first used here`), each with a label.
    pub related: Vec<(Span, String)>,
}

impl Diagnostic {
    /// An error about `span`.
    pub fn error(message: impl Into<String>, span: Span) -> Self {
        Self {
            severity: Severity::Error,
            message: message.into(),
            span: Some(span),
            label: None,
            hint: None,
            related: Vec::new(),
        }
    }

    /// An error about the whole file.
    pub fn file_error(message: impl Into<String>) -> Self {
        Self {
            span: None,
            ..Self::error(message, 0..0)
        }
    }

    /// Sets the caret's label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Sets the hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a related place.
    pub fn related(mut self, span: Span, label: impl Into<String>) -> Self {
        self.related.push((span, label.into()));
        self
    }
}

/// Every diagnostic of one manifest, with the file they are about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics {
    /// The manifest file as given.
    pub path: PathBuf,
    /// Its text (empty when it could not be read).
    pub source: String,
    /// The diagnostics, in source order.
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// No diagnostics yet for `path`.
    pub fn new(path: &Path, source: &str) -> Self {
        Self {
            path: path.to_path_buf(),
            source: source.to_owned(),
            items: Vec::new(),
        }
    }

    /// Adds one.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    /// Whether there is any error.
    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }

    /// Puts the diagnostics in source order (file-wide ones first); stable, so diagnostics
    /// at the same place keep the order they were found in.
    pub fn sort(&mut self) {
        self.items
            .sort_by_key(|d| d.span.as_ref().map(|s| (s.start, s.end)));
    }

    /// Renders every diagnostic and, when there are errors, the summary line
    /// (`error: could not check `x.toml` due to 2 previous errors`). `color` uses ANSI
    /// styles.
    pub fn render(&self, color: bool) -> String {
        let renderer = if color {
            Renderer::styled()
        } else {
            Renderer::plain()
        };
        let path = self.path.display().to_string();
        let mut out = String::new();
        for d in &self.items {
            out.push_str(&renderer.render(&[self.group(d, &path)]));
            out.push_str("\n\n");
        }
        let errors = self.error_count();
        if errors > 0 {
            let file = self
                .path
                .file_name()
                .map_or_else(|| path.clone(), |f| f.to_string_lossy().into_owned());
            let plural = if errors == 1 { "" } else { "s" };
            let title = format!("could not check `{file}` due to {errors} previous error{plural}");
            out.push_str(&renderer.render(&[Group::with_title(Level::ERROR.primary_title(title))]));
            out.push('\n');
        }
        out
    }

    fn group<'a>(&'a self, d: &'a Diagnostic, path: &'a str) -> Group<'a> {
        let level = match d.severity {
            Severity::Error => Level::ERROR,
            Severity::Warning => Level::WARNING,
        };
        let mut group = Group::with_title(level.clone().primary_title(d.message.as_str()));
        if let Some(span) = &d.span {
            let mut primary = AnnotationKind::Primary.span(self.clamp(span));
            if let Some(label) = &d.label {
                primary = primary.label(label.as_str());
            }
            let mut snippet = Snippet::source(self.source.as_str())
                .path(path)
                .line_start(1)
                .fold(true)
                .annotation(primary);
            for (span, label) in &d.related {
                snippet = snippet.annotation(
                    AnnotationKind::Context
                        .span(self.clamp(span))
                        .label(label.as_str()),
                );
            }
            group = group.element(snippet);
        }
        if let Some(hint) = &d.hint {
            group = group.element(Level::HELP.message(hint.as_str()));
        }
        group
    }

    /// A span made safe to render: inside the source and on character boundaries.
    fn clamp(&self, span: &Span) -> Span {
        let src = self.source.as_str();
        let floor = |mut i: usize| {
            i = i.min(src.len());
            while !src.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        let start = floor(span.start);
        let end = floor(span.end.max(span.start));
        start..end
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    fn diags(source: &str) -> Diagnostics {
        Diagnostics::new(Path::new("dir/m.toml"), source)
    }

    /// `items`, reported in `source`, rendered plain.
    fn rendered(source: &str, items: impl IntoIterator<Item = Diagnostic>) -> String {
        let mut d = diags(source);
        for item in items {
            d.push(item);
        }
        d.render(false)
    }

    /// Plain errors `(message, span)`, reported in `source`, rendered plain.
    fn rendered_errors(source: &str, errors: &[(&str, Span)]) -> String {
        let items = errors
            .iter()
            .map(|(m, span)| Diagnostic::error(*m, span.clone()));
        rendered(source, items)
    }

    #[test]
    fn renders_location_caret_label_hint_and_summary() {
        let out = rendered(
            "[system]\ncoers = 4\n",
            [
                Diagnostic::error("unknown key `coers` in `[system]`", 9..14)
                    .label("unknown key")
                    .hint("did you mean `cores`?"),
            ],
        );
        assert!(
            out.starts_with("error: unknown key `coers` in `[system]`\n"),
            "{out}"
        );
        for wanted in [
            " --> dir/m.toml:2:1\n",
            "2 | coers = 4\n",
            "  | ^^^^^ unknown key\n",
            "= help: did you mean `cores`?",
        ] {
            assert!(out.contains(wanted), "{out}");
        }
        assert!(
            out.ends_with("error: could not check `m.toml` due to 1 previous error\n"),
            "{out}"
        );
    }

    #[test]
    fn renders_every_error_and_counts_them() {
        let out = rendered_errors("a = 1\nb = 2\n", &[("first", 0..1), ("second", 6..7)]);
        for wanted in [
            "error: first",
            "error: second",
            "m.toml:1:1",
            "m.toml:2:1",
            "due to 2 previous errors",
        ] {
            assert!(out.contains(wanted), "{out}");
        }
    }

    #[test]
    fn file_errors_render_without_a_snippet() {
        let out = rendered(
            "",
            [Diagnostic::file_error("cannot read `m.toml`: not found").hint("check the path")],
        );
        assert!(
            out.contains("error: cannot read `m.toml`: not found\n"),
            "{out}"
        );
        assert!(out.contains("= help: check the path\n"), "{out}");
        assert!(!out.contains(" | \n") && !out.contains('^'), "{out}");
    }

    #[test]
    fn related_places_are_shown() {
        let out = rendered(
            "x = 1\ny = 1\n",
            [Diagnostic::error("dup", 6..7).related(0..1, "first here")],
        );
        assert!(out.contains("first here"), "{out}");
    }

    #[test]
    fn bad_spans_are_clamped_not_panicking() {
        let out = rendered_errors(
            "é = 1",
            &[
                ("mid-char", 1..2),
                ("past the end", 50..90),
                // A reversed span, as a buggy caller might build.
                ("reversed", Span { start: 4, end: 2 }),
            ],
        );
        assert!(out.contains("due to 3 previous errors"), "{out}");
    }

    #[test]
    fn color_adds_ansi_styles() {
        let mut d = diags("a = 1\n");
        d.push(Diagnostic::error("bad", 0..1));
        assert!(d.render(true).contains('\x1b'));
        assert!(!d.render(false).contains('\x1b'));
    }

    #[test]
    fn sorting_puts_file_errors_first_then_source_order() {
        let mut d = diags("a = 1\nb = 2\n");
        d.push(Diagnostic::error("late", 6..7));
        d.push(Diagnostic::error("early", 0..1));
        d.push(Diagnostic::file_error("file"));
        d.sort();
        let order: Vec<_> = d.items.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(order, ["file", "early", "late"]);
    }
}
