//! TOML text -> [`Draft`]: the manifest's structure, every value with its span, checked
//! for syntax, unknown keys, types, missing keys and value formats. What cannot be read is
//! left out of the draft (as `None`) after its diagnostic, so validation can still check
//! everything else and report all problems at once.

use super::diag::Diagnostic;
use super::schema::*;
use super::size::{self, NumberError};
use super::types::*;
use std::path::PathBuf;
use toml_edit::{Document, Item, TableLike, Value};

/// One `env` entry: the variable and its value.
pub(crate) type EnvEntry = (Spanned<String>, Spanned<String>);

/// `[system]` as far as it could be read.
#[derive(Clone, Debug)]
pub(crate) struct DraftSystem {
    pub header: Span,
    pub name: Option<Spanned<String>>,
    pub cores: Option<Spanned<u32>>,
    pub memory: Option<Spanned<u64>>,
    pub console: Option<Spanned<Console>>,
}

/// One `[[sandbox]]` as far as it could be read.
#[derive(Clone, Debug)]
pub(crate) struct DraftSandbox {
    pub header: Span,
    pub name: Option<Spanned<String>>,
    pub app: Option<Spanned<PathBuf>>,
    pub runtime: Option<Spanned<Runtime>>,
    pub cores: Option<Spanned<Vec<Spanned<u32>>>>,
    pub memory: Option<Spanned<u64>>,
    pub args: Vec<Spanned<String>>,
    /// The `env` table's span (or the header's), then each entry.
    pub env: (Span, Vec<EnvEntry>),
    pub devices: Vec<Spanned<Device>>,
    pub on_fault: Option<Spanned<OnFault>>,
}

/// One `[[channel]]` as far as it could be read.
#[derive(Clone, Debug)]
pub(crate) struct DraftChannel {
    pub name: Option<Spanned<String>>,
    pub writer: Option<Spanned<String>>,
    pub reader: Option<Spanned<String>>,
    pub size: Option<Spanned<u64>>,
}

/// A manifest as far as it could be read.
#[derive(Clone, Debug)]
pub(crate) struct Draft {
    pub system: Option<DraftSystem>,
    pub sandboxes: Vec<DraftSandbox>,
    pub channels: Vec<DraftChannel>,
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
    let mut p = Reader { diags };
    let root: &dyn TableLike = doc.as_table();
    p.unknown_keys(root, &TOP_KEYS, "the manifest", 0..0);

    let system = match root.get_key_value("system") {
        None => {
            p.diags.push(
                Diagnostic::error("missing `[system]` table", 0..0)
                    .label("expected `[system]` in this file")
                    .hint("add `[system]` with `name`, `cores` and `memory`"),
            );
            None
        }
        Some((k, item)) => match item.as_table_like() {
            Some(t) => Some(p.system(t, span_of(item, k.span()))),
            None => {
                p.wrong_type(item, k.span(), "a table", &TOP_KEYS[0]);
                None
            }
        },
    };
    let sandboxes = p
        .tables(root, &TOP_KEYS[1])
        .into_iter()
        .map(|(t, header)| p.sandbox(t, header))
        .collect();
    let channels = p
        .tables(root, &TOP_KEYS[2])
        .into_iter()
        .map(|(t, header)| p.channel(t, header))
        .collect();
    Some(Draft {
        system,
        sandboxes,
        channels,
    })
}

/// The span of an item, falling back to its key's (values always have one once parsed).
fn span_of(item: &Item, fallback: Option<Span>) -> Span {
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

struct Reader<'d> {
    diags: &'d mut Vec<Diagnostic>,
}

impl Reader<'_> {
    fn unknown_keys(&mut self, table: &dyn TableLike, known: &[Key], what: &str, header: Span) {
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

    fn wrong_type(&mut self, item: &Item, key_span: Option<Span>, expected: &str, key: &Key) {
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
    fn get<'t>(
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

    fn string(
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

    fn number_error(&mut self, e: NumberError, span: Span, key: &Key) {
        self.diags.push(
            Diagnostic::error(format!("invalid `{}`: {e}", key.name), span)
                .label(e.label())
                .hint(e.hint()),
        );
    }

    /// A size: a non-negative integer (bytes) or a string with a unit.
    fn size(&mut self, t: &dyn TableLike, h: &Span, what: &str, key: &Key) -> Option<Spanned<u64>> {
        let (item, span) = self.get(t, h, what, key)?;
        let parsed = if let Some(n) = item.as_integer() {
            u64::try_from(n).map_err(|_| NumberError::Negative(n))
        } else if let Some(s) = item.as_str() {
            size::parse_size(s)
        } else {
            self.wrong_type(
                item,
                Some(span),
                "a size (`\"64MiB\"` or a byte count)",
                key,
            );
            return None;
        };
        match parsed {
            Ok(n) => Some(Spanned::new(n, span)),
            Err(e) => {
                self.number_error(e, span, key);
                None
            }
        }
    }

    /// A `u32` written as an integer.
    fn uint32(&mut self, item: &Item, span: Span, key: &Key) -> Option<Spanned<u32>> {
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

    /// One of a fixed set of strings.
    fn choice<T: Copy>(
        &mut self,
        t: &dyn TableLike,
        h: &Span,
        what: &str,
        key: &Key,
        choices: &[(&'static str, T)],
        default: T,
    ) -> Option<Spanned<T>> {
        if !t.contains_key(key.name) {
            return Some(Spanned::new(default, h.clone()));
        }
        let s = self.string(t, h, what, key)?;
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
    fn tables<'t>(&mut self, root: &'t dyn TableLike, key: &Key) -> Vec<(&'t dyn TableLike, Span)> {
        let Some((k, item)) = root.get_key_value(key.name) else {
            return Vec::new();
        };
        self.table_list(item, k.span(), key)
    }

    fn table_list<'t>(
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

    fn system(&mut self, t: &dyn TableLike, header: Span) -> DraftSystem {
        let what = "`[system]`";
        self.unknown_keys(t, &SYSTEM_KEYS, what, header.clone());
        let name = self.string(t, &header, what, &SYSTEM_KEYS[0]);
        let cores = self
            .get(t, &header, what, &SYSTEM_KEYS[1])
            .and_then(|(item, span)| self.uint32(item, span, &SYSTEM_KEYS[1]));
        let memory = self.size(t, &header, what, &SYSTEM_KEYS[2]);
        let console = self.choice(t, &header, what, &SYSTEM_KEYS[3], &CONSOLES, Console::Com1);
        DraftSystem {
            header,
            name,
            cores,
            memory,
            console,
        }
    }

    fn sandbox(&mut self, t: &dyn TableLike, header: Span) -> DraftSandbox {
        let what = "`[[sandbox]]`";
        let k = &SANDBOX_KEYS;
        self.unknown_keys(t, k, what, header.clone());
        let name = self.string(t, &header, what, &k[0]);
        let app = self
            .string(t, &header, what, &k[1])
            .map(|s| Spanned::new(PathBuf::from(s.value), s.span));
        let runtime = self.choice(t, &header, what, &k[2], &RUNTIMES, Runtime::Hermit);
        let cores = self.core_list(t, &header, what, &k[3]);
        let memory = self.size(t, &header, what, &k[4]);
        let args = self.string_list(t, &header, what, &k[5]);
        let env = self.env(t, &header, what, &k[6]);
        let devices = self.devices(t, &header, what, &k[7]);
        let on_fault = self.choice(t, &header, what, &k[8], &ON_FAULT, OnFault::HaltSandbox);
        DraftSandbox {
            header,
            name,
            app,
            runtime,
            cores,
            memory,
            args,
            env,
            devices,
            on_fault,
        }
    }

    fn channel(&mut self, t: &dyn TableLike, header: Span) -> DraftChannel {
        let what = "`[[channel]]`";
        let k = &CHANNEL_KEYS;
        self.unknown_keys(t, k, what, header.clone());
        DraftChannel {
            name: self.string(t, &header, what, &k[0]),
            writer: self.string(t, &header, what, &k[1]),
            reader: self.string(t, &header, what, &k[2]),
            size: self.size(t, &header, what, &k[3]),
        }
    }

    fn core_list(
        &mut self,
        t: &dyn TableLike,
        h: &Span,
        what: &str,
        key: &Key,
    ) -> Option<Spanned<Vec<Spanned<u32>>>> {
        let (item, span) = self.get(t, h, what, key)?;
        let Some(array) = item.as_array() else {
            self.wrong_type(item, Some(span), "a list of core indices", key);
            return None;
        };
        // Every element is read (and reported) before giving up on the list, so that a
        // list with a bad element is not also called empty.
        let cores: Vec<Option<Spanned<u32>>> = array
            .iter()
            .map(|v| {
                let vspan = v.span().unwrap_or(span.clone());
                self.uint32(&Item::Value(v.clone()), vspan, key)
            })
            .collect();
        let cores = cores.into_iter().collect::<Option<Vec<_>>>()?;
        Some(Spanned::new(cores, span))
    }

    fn string_list(
        &mut self,
        t: &dyn TableLike,
        h: &Span,
        what: &str,
        key: &Key,
    ) -> Vec<Spanned<String>> {
        let Some((item, span)) = self.get(t, h, what, key) else {
            return Vec::new();
        };
        let Some(array) = item.as_array() else {
            self.wrong_type(item, Some(span), "a list of strings", key);
            return Vec::new();
        };
        let mut out = Vec::new();
        for v in array.iter() {
            let vspan = v.span().unwrap_or(span.clone());
            match v.as_str() {
                Some(s) => out.push(Spanned::new(s.to_owned(), vspan)),
                None => self.wrong_type(&Item::Value(v.clone()), Some(vspan), "a string", key),
            }
        }
        out
    }

    fn env(&mut self, t: &dyn TableLike, h: &Span, what: &str, key: &Key) -> (Span, Vec<EnvEntry>) {
        let Some((item, span)) = self.get(t, h, what, key) else {
            return (h.clone(), Vec::new());
        };
        let Some(table) = item.as_table_like() else {
            self.wrong_type(item, Some(span.clone()), "a table of strings", key);
            return (span, Vec::new());
        };
        let mut out = Vec::new();
        for (name, value) in table.iter() {
            let kspan = table
                .key(name)
                .and_then(|k| k.span())
                .unwrap_or(span.clone());
            let vspan = span_of(value, Some(kspan.clone()));
            match value.as_str() {
                Some(s) => out.push((
                    Spanned::new(name.to_owned(), kspan),
                    Spanned::new(s.to_owned(), vspan),
                )),
                None => self.wrong_type(value, Some(vspan), "a string", key),
            }
        }
        (span, out)
    }

    fn devices(
        &mut self,
        t: &dyn TableLike,
        h: &Span,
        what: &str,
        key: &Key,
    ) -> Vec<Spanned<Device>> {
        let Some((item, span)) = self.get(t, h, what, key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (dev, dspan) in self.table_list(item, Some(span), key) {
            self.unknown_keys(dev, &DEVICE_KEYS, "a device", dspan.clone());
            let Some((port, pspan)) = self.get(dev, &dspan, "a device", &DEVICE_KEYS[0]) else {
                continue;
            };
            let parsed = if let Some(n) = port.as_integer() {
                u64::try_from(n)
                    .map_err(|_| NumberError::Negative(n))
                    .and_then(size::port)
                    .map(|p| (p, p))
            } else if let Some(s) = port.as_str() {
                size::parse_port_range(s)
            } else {
                self.wrong_type(
                    port,
                    Some(pspan),
                    "a port or port range (`\"0x2f8-0x2ff\"`)",
                    &DEVICE_KEYS[0],
                );
                continue;
            };
            match parsed {
                Ok((first, last)) => out.push(Spanned::new(Device::Ports { first, last }, pspan)),
                Err(e) => self.number_error(e, pspan, &DEVICE_KEYS[0]),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(src: &str) -> (Draft, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let draft = parse(src, &mut diags).expect("TOML");
        (draft, diags)
    }

    const MINIMAL: &str = r#"
[system]
name = "demo"
cores = 2
memory = "512MiB"

[[sandbox]]
name = "a"
app = "../apps/a"
runtime = "bare"
cores = [0, 1]
memory = "8MiB"
args = ["x", "y"]
env = { K = "v" }
devices = [{ port = "0x2f8-0x2ff" }, { port = 0x60 }]
on_fault = "restart"

[[channel]]
name = "c"
writer = "a"
reader = "a"
size = 4096
"#;

    #[test]
    fn reads_every_key_with_spans() {
        let (d, diags) = parse_ok(MINIMAL);
        assert!(diags.is_empty(), "{diags:?}");
        let sys = d.system.unwrap();
        assert_eq!(sys.name.as_ref().unwrap().value, "demo");
        assert_eq!(&MINIMAL[sys.name.unwrap().span], "\"demo\"");
        assert_eq!(sys.cores.unwrap().value, 2);
        assert_eq!(sys.memory.unwrap().value, 512 << 20);
        assert_eq!(sys.console.as_ref().unwrap().value, Console::Com1);
        let s = &d.sandboxes[0];
        assert_eq!(s.runtime.as_ref().unwrap().value, Runtime::Bare);
        let cores: Vec<u32> = s
            .cores
            .as_ref()
            .unwrap()
            .value
            .iter()
            .map(|c| c.value)
            .collect();
        assert_eq!(cores, [0, 1]);
        assert_eq!(
            &MINIMAL[s.cores.as_ref().unwrap().value[1].span.clone()],
            "1"
        );
        assert_eq!(s.args.len(), 2);
        assert_eq!(s.env.1[0].0.value, "K");
        assert_eq!(s.env.1[0].1.value, "v");
        assert_eq!(
            s.devices[0].value,
            Device::Ports {
                first: 0x2f8,
                last: 0x2ff
            }
        );
        assert_eq!(
            s.devices[1].value,
            Device::Ports {
                first: 0x60,
                last: 0x60
            }
        );
        assert_eq!(s.on_fault.as_ref().unwrap().value, OnFault::Restart);
        assert_eq!(d.channels[0].size.as_ref().unwrap().value, 4096);
    }

    #[test]
    fn defaults() {
        let src = "[system]\nname='x'\ncores=1\nmemory=1\n[[sandbox]]\nname='a'\napp='a'\ncores=[0]\nmemory=1\n";
        let (d, diags) = parse_ok(src);
        assert!(diags.is_empty());
        let s = &d.sandboxes[0];
        assert_eq!(s.runtime.as_ref().unwrap().value, Runtime::Hermit);
        assert_eq!(s.on_fault.as_ref().unwrap().value, OnFault::HaltSandbox);
        assert_eq!(d.system.unwrap().console.unwrap().value, Console::Com1);
    }

    #[test]
    fn syntax_error_is_located() {
        let mut diags = Vec::new();
        assert!(parse("[system\n", &mut diags).is_none());
        assert_eq!(diags.len(), 1);
        assert!(diags[0].message.starts_with("TOML syntax error"));
        assert!(diags[0].span.is_some());
    }

    #[test]
    fn unknown_key_suggests() {
        let src = "[system]\nname='x'\ncoers=1\nmemory=1\n";
        let (_, diags) = parse_ok(src);
        let unknown = diags
            .iter()
            .find(|d| d.message.contains("unknown key `coers`"))
            .unwrap();
        assert_eq!(unknown.hint.as_deref(), Some("did you mean `cores`?"));
        assert_eq!(&src[unknown.span.clone().unwrap()], "coers");
        assert!(diags
            .iter()
            .any(|d| d.message == "missing key `cores` in `[system]`"));
    }

    #[test]
    fn wrong_types_and_bad_values_all_reported() {
        let src = "[system]\nname=1\ncores='4'\nmemory=true\nconsole='com9'\n";
        let (d, diags) = parse_ok(src);
        assert_eq!(diags.len(), 4, "{diags:#?}");
        let sys = d.system.unwrap();
        assert!(
            sys.name.is_none()
                && sys.cores.is_none()
                && sys.memory.is_none()
                && sys.console.is_none()
        );
    }

    #[test]
    fn missing_system() {
        let (d, diags) = parse_ok("");
        assert!(d.system.is_none());
        assert_eq!(diags[0].message, "missing `[system]` table");
    }

    #[test]
    fn inline_sandbox_tables_are_accepted() {
        let src = "system={name='x',cores=1,memory=1}\nsandbox=[{name='a',app='a',cores=[0],memory=1}, 3]\n";
        let (d, diags) = parse_ok(src);
        assert_eq!(d.sandboxes.len(), 1);
        assert_eq!(diags.len(), 1, "{diags:#?}");
        assert!(diags[0].message.contains("must be a table"));
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("coers", ["cores", "memory"]), Some("cores"));
        assert_eq!(
            did_you_mean("halt-sandbx", ["restart", "halt-system", "halt-sandbox"]),
            Some("halt-sandbox")
        );
        assert_eq!(did_you_mean("zzz", ["cores", "memory"]), None);
    }
}
