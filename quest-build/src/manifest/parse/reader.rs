//! [`Reader`]: reads items out of TOML tables and reports, in the manifest's words, what
//! is unknown, missing, of the wrong type or out of range.

use super::{did_you_mean, span_of, type_name, value_type_name};
use crate::manifest::diag::Diagnostic;
use crate::manifest::schema::Key;
use crate::manifest::size::NumberError;
use crate::manifest::types::{Span, Spanned};
use toml_edit::{Item, TableLike};

/// Collects the diagnostics of one parse.
pub(crate) struct Reader<'d> {
    pub(crate) diags: &'d mut Vec<Diagnostic>,
}

impl Reader<'_> {
    /// Reports every key of `table` (`what`, at `header`) that is not in `known`.
    pub(crate) fn unknown_keys(
        &mut self,
        table: &dyn TableLike,
        known: &[Key],
        what: &str,
        header: Span,
    ) {
        for (name, item) in table.iter() {
            if known.iter().any(|k| k.name == name) {
                continue;
            }
            let span = table
                .key(name)
                .and_then(|k| k.span())
                .unwrap_or_else(|| span_of(item, Some(header.clone())));
            let noun = if item.is_table() || item.is_array_of_tables() {
                "table"
            } else {
                "key"
            };
            let hint = match did_you_mean(name, known.iter().map(|k| k.name)) {
                Some(k) => format!("did you mean `{k}`?"),
                None => format!(
                    "{what} accepts: {}",
                    known
                        .iter()
                        .map(|k| format!("`{}`", k.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            self.diags.push(
                Diagnostic::error(format!("unknown {noun} `{name}` in {what}"), span)
                    .label(format!("unknown {noun}"))
                    .hint(hint),
            );
        }
    }

    pub(crate) fn wrong_type(
        &mut self,
        item: &Item,
        key_span: Option<Span>,
        expected: &str,
        key: &Key,
    ) {
        self.diags.push(
            Diagnostic::error(
                format!("`{}` must be {expected}, not {}", key.name, type_name(item)),
                span_of(item, key_span),
            )
            .label(format!("expected {expected}"))
            .hint(format!("for example: `{}`", key.example)),
        );
    }

    /// A required key is missing from the table at `header`.
    fn missing(&mut self, header: &Span, what: &str, key: &Key) {
        self.diags.push(
            Diagnostic::error(
                format!("missing key `{}` in {what}", key.name),
                header.clone(),
            )
            .label(format!("this table has no `{}`", key.name))
            .hint(format!("add `{}`", key.example)),
        );
    }

    /// The item under `key`, or a diagnostic if it is required and missing.
    pub(crate) fn get<'t>(
        &mut self,
        table: &'t dyn TableLike,
        header: &Span,
        what: &str,
        key: &Key,
    ) -> Option<(&'t Item, Span)> {
        match table.get_key_value(key.name) {
            Some((k, item)) if !item.is_none() => Some((item, span_of(item, k.span()))),
            _ => {
                if key.required {
                    self.missing(header, what, key);
                }
                None
            }
        }
    }

    pub(crate) fn string(
        &mut self,
        t: &dyn TableLike,
        h: &Span,
        what: &str,
        key: &Key,
    ) -> Option<Spanned<String>> {
        let (item, span) = self.get(t, h, what, key)?;
        match item.as_str() {
            Some(s) => Some(Spanned::new(s.to_owned(), span)),
            None => {
                self.wrong_type(item, Some(span), "a string", key);
                None
            }
        }
    }

    pub(crate) fn number_error(&mut self, e: NumberError, span: Span, key: &Key) {
        self.diags.push(
            Diagnostic::error(format!("invalid `{}`: {e}", key.name), span)
                .label(e.label())
                .hint(e.hint()),
        );
    }

    /// A number written as a TOML integer (not negative, then `int`) or as a string (then
    /// `text`); anything else is reported as not `expected`, a bad number as invalid, and
    /// gives `None`.
    pub(crate) fn number<T>(
        &mut self,
        item: &Item,
        span: Span,
        key: &Key,
        expected: &str,
        int: impl FnOnce(u64) -> Result<T, NumberError>,
        text: impl FnOnce(&str) -> Result<T, NumberError>,
    ) -> Option<T> {
        let parsed = if let Some(n) = item.as_integer() {
            u64::try_from(n)
                .map_err(|_| NumberError::Negative(n))
                .and_then(int)
        } else if let Some(s) = item.as_str() {
            text(s)
        } else {
            self.wrong_type(item, Some(span), expected, key);
            return None;
        };
        parsed.map_err(|e| self.number_error(e, span, key)).ok()
    }

    /// A `u32` written as an integer.
    pub(crate) fn uint32(&mut self, item: &Item, span: Span, key: &Key) -> Option<Spanned<u32>> {
        let Some(n) = item.as_integer() else {
            self.wrong_type(item, Some(span), "an integer", key);
            return None;
        };
        match u32::try_from(n) {
            Ok(n) => Some(Spanned::new(n, span)),
            Err(_) => {
                let e = if n < 0 {
                    NumberError::Negative(n)
                } else {
                    NumberError::Overflow(n.to_string())
                };
                self.number_error(e, span, key);
                None
            }
        }
    }

    /// The value named `s` among `choices`, or a diagnostic with the closest name.
    pub(crate) fn choice<T: Copy>(
        &mut self,
        s: Spanned<String>,
        key: &Key,
        choices: &[(&'static str, T)],
    ) -> Option<Spanned<T>> {
        if let Some(&(_, v)) = choices.iter().find(|(name, _)| *name == s.value) {
            return Some(Spanned::new(v, s.span));
        }
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("`\"{n}\"`")).collect();
        let hint = match did_you_mean(&s.value, choices.iter().map(|(n, _)| *n)) {
            Some(m) => format!(
                "did you mean `\"{m}\"`? `{}` is one of {}",
                key.name,
                names.join(", ")
            ),
            None => format!("`{}` is one of {}", key.name, names.join(", ")),
        };
        self.diags.push(
            Diagnostic::error(format!("unknown {} `{}`", key.name, s.value), s.span)
                .label(format!("not a valid `{}`", key.name))
                .hint(hint),
        );
        None
    }

    /// The tables under a top-level key: `[[sandbox]]` or `sandbox = [{ .. }, ..]`.
    pub(crate) fn tables<'t>(
        &mut self,
        root: &'t dyn TableLike,
        key: &Key,
    ) -> Vec<(&'t dyn TableLike, Span)> {
        let Some((k, item)) = root.get_key_value(key.name) else {
            return Vec::new();
        };
        self.table_list(item, k.span(), key)
    }

    /// The tables of an array of tables or of an array of inline tables.
    pub(crate) fn table_list<'t>(
        &mut self,
        item: &'t Item,
        key_span: Option<Span>,
        key: &Key,
    ) -> Vec<(&'t dyn TableLike, Span)> {
        let mut out: Vec<(&dyn TableLike, Span)> = Vec::new();
        if let Some(aot) = item.as_array_of_tables() {
            for t in aot.iter() {
                out.push((t, t.span().or(key_span.clone()).unwrap_or(0..0)));
            }
        } else if let Some(array) = item.as_array() {
            for v in array.iter() {
                let span = v.span().or(key_span.clone()).unwrap_or(0..0);
                match v.as_inline_table() {
                    Some(t) => out.push((t, span)),
                    None => {
                        self.diags.push(
                            Diagnostic::error(
                                format!(
                                    "each entry of `{}` must be a table, not {}",
                                    key.name,
                                    value_type_name(v)
                                ),
                                span,
                            )
                            .label("expected a table")
                            .hint(format!("for example: `{}`", key.example)),
                        );
                    }
                }
            }
        } else {
            self.wrong_type(item, key_span, "an array of tables", key);
        }
        out
    }
}
