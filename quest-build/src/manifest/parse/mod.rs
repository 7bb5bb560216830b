//! TOML text -> [`Draft`]: the manifest's structure, every value with its span, checked
//! for syntax, unknown keys, types, missing keys and value formats. What cannot be read is
//! left out of the draft (as `None`) after its diagnostic, so validation can still check
//! everything else and report all problems at once.
//!
//! - `table`: [`manifest_table!`](table::manifest_table), which derives a table's model,
//!   draft, key list, reading and completion from one description of its keys (the
//!   descriptions are in `schema`).
//! - `fields`: how each kind of key is read.
//! - `reader`: reading items and reporting what is wrong with them.

pub(crate) mod fields;
pub(crate) mod reader;
pub(crate) mod table;
#[cfg(test)]
mod tests;

use super::diag::Diagnostic;
use super::schema::{DraftChannel, DraftSandbox, DraftSystem, TOP_KEYS};
use super::types::{Channel, Sandbox, Span, Spanned, System};
use reader::Reader;
use toml_edit::{Document, Item, TableLike, Value};

/// One `env` entry: the variable and its value.
pub(crate) type EnvEntry = (Spanned<String>, Spanned<String>);

/// A manifest as far as it could be read.
#[derive(Clone, Debug)]
pub(crate) struct Draft {
    pub system: Option<DraftSystem>,
    pub sandboxes: Vec<DraftSandbox>,
    pub channels: Vec<DraftChannel>,
}

impl Draft {
    /// The model of a draft that has every required value.
    pub(crate) fn complete(self) -> Option<(System, Vec<Sandbox>, Vec<Channel>)> {
        let system = self.system?.complete()?;
        let sandboxes = self.sandboxes.into_iter().map(DraftSandbox::complete);
        let channels = self.channels.into_iter().map(DraftChannel::complete);
        Some((
            system,
            sandboxes.collect::<Option<_>>()?,
            channels.collect::<Option<_>>()?,
        ))
    }
}

/// Parses `source`, appending a diagnostic for everything it cannot read. `None` only
/// when the text is not TOML at all.
pub(crate) fn parse(source: &str, diags: &mut Vec<Diagnostic>) -> Option<Draft> {
    let doc = match Document::parse(source) {
        Ok(doc) => doc,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().lines().next().unwrap_or("invalid TOML").trim();
            diags.push(
                Diagnostic::error(format!("TOML syntax error: {message}"), span)
                    .label("here")
                    .hint("see https://toml.io for the TOML syntax"),
            );
            return None;
        }
    };
    let mut r = Reader { diags };
    let root: &dyn TableLike = doc.as_table();
    r.unknown_keys(root, &TOP_KEYS, "the manifest", 0..0);

    let system = match root.get_key_value("system") {
        None => {
            r.diags.push(
                Diagnostic::error("missing `[system]` table", 0..0)
                    .label("expected `[system]` in this file")
                    .hint("add `[system]` with `name`, `cores` and `memory`"),
            );
            None
        }
        Some((k, item)) => match item.as_table_like() {
            Some(t) => Some(DraftSystem::read(&mut r, t, span_of(item, k.span()))),
            None => {
                r.wrong_type(item, k.span(), "a table", &TOP_KEYS[0]);
                None
            }
        },
    };
    let sandboxes = r
        .tables(root, &TOP_KEYS[1])
        .into_iter()
        .map(|(t, header)| DraftSandbox::read(&mut r, t, header))
        .collect();
    let channels = r
        .tables(root, &TOP_KEYS[2])
        .into_iter()
        .map(|(t, header)| DraftChannel::read(&mut r, t, header))
        .collect();
    Some(Draft {
        system,
        sandboxes,
        channels,
    })
}

/// The span of an item, falling back to its key's (values always have one once parsed).
pub(crate) fn span_of(item: &Item, fallback: Option<Span>) -> Span {
    item.span().or(fallback).unwrap_or(0..0)
}

/// What an item is, as people say it.
fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(v) => value_type_name(v),
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

fn value_type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "an inline table",
    }
}

/// The closest known name to `name`, if it is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|&(score, _)| score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
