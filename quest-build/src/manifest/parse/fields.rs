//! How each kind of key is read ([`Field`]): a string, a path, an integer, a size, one of
//! a fixed set of names, a list of cores, a list of strings, an `env` table, a list of
//! devices. Each kind says what the draft keeps (with `None` or nothing where the value
//! could not be read, after its diagnostic) and how that completes into the model.

use super::reader::Reader;
use super::{span_of, EnvEntry};
use crate::manifest::diag::Diagnostic;
use crate::manifest::pci::parse_pci;
use crate::manifest::schema::{Enumerated, Key, DEVICE_KEYS};
use crate::manifest::size;
use crate::manifest::types::{Device, Dma, IfAbsent, PciDevice, PciSelector, Span, Spanned};
use std::marker::PhantomData;
use std::path::PathBuf;
use toml_edit::{Item, TableLike};

/// A kind of key: how it is read from its table, what the draft keeps of it, and what the
/// model holds.
pub(crate) trait Field {
    /// What the draft keeps.
    type Draft: Complete<Self::Model>;
    /// What the model holds.
    type Model;
    /// Reads `key` of the table `t` (`what`, at `header`).
    fn read(
        r: &mut Reader<'_>,
        t: &dyn TableLike,
        header: &Span,
        what: &str,
        key: &Key,
    ) -> Self::Draft;
}

/// A draft value that completes into a model value `M`.
pub(crate) trait Complete<M> {
    /// The model value, if the draft holds one (a required value that could not be read
    /// does not).
    fn complete(self) -> Option<M>;
}

/// A value that could not be read is `None`.
impl<M> Complete<M> for Option<M> {
    fn complete(self) -> Option<M> {
        self
    }
}

/// A list keeps what could be read (empty when absent).
impl<T> Complete<Vec<T>> for Vec<T> {
    fn complete(self) -> Option<Vec<T>> {
        Some(self)
    }
}

/// An optional value: a value that could not be read was reported and completes as absent.
impl<T> Complete<Option<Spanned<T>>> for Option<Spanned<T>> {
    fn complete(self) -> Option<Option<Spanned<T>>> {
        Some(self)
    }
}

/// `env`: the table's span (for validation's diagnostics), then its entries.
impl Complete<Vec<EnvEntry>> for (Span, Vec<EnvEntry>) {
    fn complete(self) -> Option<Vec<EnvEntry>> {
        Some(self.1)
    }
}

/// A string.
pub(crate) struct Str;
/// A path, written as a string.
pub(crate) struct Path;
/// A `u32` written as an integer.
pub(crate) struct Uint32;
/// A size: a non-negative integer (bytes) or a string with a unit.
pub(crate) struct Size;
/// One of the names of `T`, `T`'s default when absent.
pub(crate) struct Choice<T>(PhantomData<T>);
/// A duration: a string with a time unit, read into nanoseconds.
pub(crate) struct Duration;
/// An optional key of kind `K` that has no default: absent is `None`.
pub(crate) struct Opt<K>(PhantomData<K>);
/// A list of core indices.
pub(crate) struct CoreList;
/// A list of strings (empty when absent).
pub(crate) struct StringList;
/// A table of string values; the draft keeps the table's span (or the header's).
pub(crate) struct Env;
/// A list of device tables.
pub(crate) struct Devices;

impl Field for Str {
    type Draft = Option<Spanned<String>>;
    type Model = Spanned<String>;
    fn read(r: &mut Reader<'_>, t: &dyn TableLike, h: &Span, what: &str, key: &Key) -> Self::Draft {
        r.string(t, h, what, key)
    }
}

impl Field for Path {
    type Draft = Option<Spanned<PathBuf>>;
    type Model = Spanned<PathBuf>;
    fn read(r: &mut Reader<'_>, t: &dyn TableLike, h: &Span, what: &str, key: &Key) -> Self::Draft {
        r.string(t, h, what, key)
            .map(|s| Spanned::new(PathBuf::from(s.value), s.span))
    }
}

impl Field for Uint32 {
    type Draft = Option<Spanned<u32>>;
    type Model = Spanned<u32>;
    fn read(r: &mut Reader<'_>, t: &dyn TableLike, h: &Span, what: &str, key: &Key) -> Self::Draft {
        let (item, span) = r.get(t, h, what, key)?;
        r.uint32(item, span, key)
    }
}

/// A `u64` key read by [`Reader::number`]: `EXPECTED` in diagnostics, `INT` for a TOML
/// integer, `TEXT` for a string.
trait NumberKind {
    const EXPECTED: &'static str;
    const INT: fn(u64) -> Result<u64, size::NumberError>;
    const TEXT: fn(&str) -> Result<u64, size::NumberError>;
}

impl NumberKind for Size {
    const EXPECTED: &'static str = "a size (`\"64MiB\"` or a byte count)";
    const INT: fn(u64) -> Result<u64, size::NumberError> = Ok;
    const TEXT: fn(&str) -> Result<u64, size::NumberError> = size::parse_size;
}

impl NumberKind for Duration {
    const EXPECTED: &'static str = "a duration (`\"100us\"`)";
    // A bare integer could be cycles or microseconds: refused with a hint.
    const INT: fn(u64) -> Result<u64, size::NumberError> = |_| Err(size::NumberError::NoTimeUnit);
    const TEXT: fn(&str) -> Result<u64, size::NumberError> = size::parse_duration;
}

impl<N: NumberKind> Field for N {
    type Draft = Option<Spanned<u64>>;
    type Model = Spanned<u64>;
    fn read(r: &mut Reader<'_>, t: &dyn TableLike, h: &Span, what: &str, key: &Key) -> Self::Draft {
        let (item, span) = r.get(t, h, what, key)?;
        let n = r.number(item, span.clone(), key, N::EXPECTED, N::INT, N::TEXT)?;
        Some(Spanned::new(n, span))
    }
}

impl<T, K> Field for Opt<K>
where
    K: Field<Draft = Option<Spanned<T>>, Model = Spanned<T>>,
{
    type Draft = Option<Spanned<T>>;
    type Model = Option<Spanned<T>>;
    fn read(r: &mut Reader<'_>, t: &dyn TableLike, h: &Span, what: &str, key: &Key) -> Self::Draft {
        if !t.contains_key(key.name) {
            return None;
        }
        K::read(r, t, h, what, key)
    }
}

impl<T: Enumerated> Field for Choice<T> {
    type Draft = Option<Spanned<T>>;
    type Model = Spanned<T>;
    fn read(r: &mut Reader<'_>, t: &dyn TableLike, h: &Span, what: &str, key: &Key) -> Self::Draft {
        if !t.contains_key(key.name) {
            return Some(Spanned::new(T::DEFAULT, h.clone()));
        }
        let s = r.string(t, h, what, key)?;
        r.choice(s, key, T::NAMES)
    }
}

impl Field for CoreList {
    type Draft = Option<Spanned<Vec<Spanned<u32>>>>;
    type Model = Spanned<Vec<Spanned<u32>>>;
    fn read(r: &mut Reader<'_>, t: &dyn TableLike, h: &Span, what: &str, key: &Key) -> Self::Draft {
        let (item, span) = r.get(t, h, what, key)?;
        let Some(array) = item.as_array() else {
            r.wrong_type(item, Some(span), "a list of core indices", key);
            return None;
        };
        // Every element is read (and reported) before giving up on the list, so that a
        // list with a bad element is not also called empty.
        let cores: Vec<Option<Spanned<u32>>> = array
            .iter()
            .map(|v| {
                let vspan = v.span().unwrap_or(span.clone());
                r.uint32(&Item::Value(v.clone()), vspan, key)
            })
            .collect();
        let cores = cores.into_iter().collect::<Option<Vec<_>>>()?;
        Some(Spanned::new(cores, span))
    }
}

impl Field for StringList {
    type Draft = Vec<Spanned<String>>;
    type Model = Vec<Spanned<String>>;
    fn read(r: &mut Reader<'_>, t: &dyn TableLike, h: &Span, what: &str, key: &Key) -> Self::Draft {
        let Some((item, span)) = r.get(t, h, what, key) else {
            return Vec::new();
        };
        let Some(array) = item.as_array() else {
            r.wrong_type(item, Some(span), "a list of strings", key);
            return Vec::new();
        };
        let mut out = Vec::new();
        for v in array.iter() {
            let vspan = v.span().unwrap_or(span.clone());
            match v.as_str() {
                Some(s) => out.push(Spanned::new(s.to_owned(), vspan)),
                None => r.wrong_type(&Item::Value(v.clone()), Some(vspan), "a string", key),
            }
        }
        out
    }
}

impl Field for Env {
    type Draft = (Span, Vec<EnvEntry>);
    type Model = Vec<EnvEntry>;
    fn read(r: &mut Reader<'_>, t: &dyn TableLike, h: &Span, what: &str, key: &Key) -> Self::Draft {
        let Some((item, span)) = r.get(t, h, what, key) else {
            return (h.clone(), Vec::new());
        };
        let Some(table) = item.as_table_like() else {
            r.wrong_type(item, Some(span.clone()), "a table of strings", key);
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
                None => r.wrong_type(value, Some(vspan), "a string", key),
            }
        }
        (span, out)
    }
}

impl Field for Devices {
    type Draft = Vec<Spanned<Device>>;
    type Model = Vec<Spanned<Device>>;
    fn read(r: &mut Reader<'_>, t: &dyn TableLike, h: &Span, what: &str, key: &Key) -> Self::Draft {
        let Some((item, span)) = r.get(t, h, what, key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (dev, dspan) in r.table_list(item, Some(span), key) {
            r.unknown_keys(dev, DEVICE_KEYS, "a device", dspan.clone());
            if let Some(d) = read_device(r, dev, &dspan) {
                out.push(d);
            }
        }
        out
    }
}

/// The device key named `name`.
fn device_key(name: &str) -> &'static Key {
    DEVICE_KEYS
        .iter()
        .find(|k| k.name == name)
        .unwrap_or(&DEVICE_KEYS[0])
}

/// One device table: a port range (with `irq`) or a PCI function (with `index`, `dma`,
/// `if_absent`). Keys of the other kind are reported, as is a table with both or neither.
fn read_device(r: &mut Reader<'_>, dev: &dyn TableLike, dspan: &Span) -> Option<Spanned<Device>> {
    const WHAT: &str = "a device";
    let present = |name: &str| dev.get(name).is_some_and(|i| !i.is_none());
    let (is_port, is_pci) = (present("port"), present("pci"));
    let (own, other): (&[&str], &str) = match (is_port, is_pci) {
        (true, true) => {
            let (_, pspan) = r.get(dev, dspan, WHAT, device_key("pci"))?;
            r.diags.push(
                Diagnostic::error("a device is either `port` or `pci`, not both", pspan)
                    .label("second kind of device")
                    .hint("write one device table per device"),
            );
            return None;
        }
        (false, false) => {
            r.diags.push(
                Diagnostic::error("a device needs `port` or `pci`", dspan.clone())
                    .label("no `port` or `pci`")
                    .hint("for example: `{ port = \"0x2f8-0x2ff\", irq = 3 }` or `{ pci = \"00:03.0\" }`"),
            );
            return None;
        }
        (true, false) => (&["irq"], "port"),
        (false, true) => (&["index", "dma", "if_absent"], "pci"),
    };
    // Keys of the other kind of device.
    let mut misplaced = false;
    for k in DEVICE_KEYS
        .iter()
        .filter(|k| k.name != "port" && k.name != "pci")
    {
        if own.contains(&k.name) {
            continue;
        }
        if let Some((_, kspan)) = r.get(dev, dspan, WHAT, k) {
            let kind = if other == "port" {
                "a port range"
            } else {
                "a PCI function"
            };
            let belongs = if k.name == "irq" {
                "`port` ranges (a PCI function's interrupts come with MSI, not yet supported)"
            } else {
                "PCI functions"
            };
            r.diags.push(
                Diagnostic::error(format!("`{}` does not apply to {kind}", k.name), kspan)
                    .label(format!("not for `{other}`"))
                    .hint(format!("`{}` belongs to {belongs}", k.name)),
            );
            misplaced = true;
        }
    }
    if is_port {
        let port_key = device_key("port");
        let (port, pspan) = r.get(dev, dspan, WHAT, port_key)?;
        let ports = r.number(
            port,
            pspan.clone(),
            port_key,
            "a port or port range (`\"0x2f8-0x2ff\"`)",
            |n| size::port(n).map(|p| (p, p)),
            size::parse_port_range,
        );
        let irq = match r.get(dev, dspan, WHAT, device_key("irq")) {
            Some((item, span)) => Some(r.uint32(item, span, device_key("irq"))?),
            None => None,
        };
        let (first, last) = ports?;
        return (!misplaced).then(|| Spanned::new(Device::Ports { first, last, irq }, pspan));
    }
    let pci_key = device_key("pci");
    let text = r.string(dev, dspan, WHAT, pci_key)?;
    let select = match parse_pci(&text.value) {
        Ok(s) => Some(s),
        Err(e) => {
            r.diags.push(
                Diagnostic::error(format!("invalid `pci`: {e}"), text.span.clone())
                    .label("not a PCI function")
                    .hint(e.hint()),
            );
            None
        }
    };
    let index = match r.get(dev, dspan, WHAT, device_key("index")) {
        Some((item, span)) => {
            let index = r.uint32(item, span.clone(), device_key("index"))?;
            if let Some(PciSelector::Address(_)) = select {
                r.diags.push(
                    Diagnostic::error(
                        "`index` applies to a vendor:device ID, not to an address",
                        span,
                    )
                    .label("the address names one function")
                    .hint("drop `index`, or name the function by ID (`pci = \"1234:11e8\"`)"),
                );
                return None;
            }
            index.value
        }
        None => 0,
    };
    let dma = choice::<Dma>(r, dev, dspan, "dma")?;
    let if_absent = choice::<IfAbsent>(r, dev, dspan, "if_absent")?;
    let select = match select? {
        PciSelector::Id { id, .. } => PciSelector::Id { id, index },
        a => a,
    };
    (!misplaced).then(|| {
        Spanned::new(
            Device::Pci(PciDevice {
                select,
                dma,
                if_absent,
            }),
            text.span,
        )
    })
}

/// A device key written as one of `T`'s names (`T`'s default when absent).
fn choice<T: Enumerated>(
    r: &mut Reader<'_>,
    dev: &dyn TableLike,
    dspan: &Span,
    name: &str,
) -> Option<T> {
    let key = device_key(name);
    if dev.get(name).is_none_or(|i| i.is_none()) {
        return Some(T::DEFAULT);
    }
    let s = r.string(dev, dspan, "a device", key)?;
    r.choice(s, key, T::NAMES).map(|v| v.value)
}
