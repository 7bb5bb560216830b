//! The manifest's schema: which keys each table accepts (with an example of each, used in
//! hints) and the spellings of its enumerated values. `partition-manifests/README.md`
//! documents the same keys.

use super::types::{Console, OnFault, Runtime};

/// A key a table accepts, and an example of it (used in hints).
pub(crate) struct Key {
    pub name: &'static str,
    pub example: &'static str,
    pub required: bool,
}

const fn key(name: &'static str, example: &'static str, required: bool) -> Key {
    Key {
        name,
        example,
        required,
    }
}

pub(crate) const TOP_KEYS: [Key; 3] = [
    key("system", "[system]", true),
    key("sandbox", "[[sandbox]]", false),
    key("channel", "[[channel]]", false),
];

pub(crate) const SYSTEM_KEYS: [Key; 4] = [
    key("name", "name = \"demo\"", true),
    key("cores", "cores = 4", true),
    key("memory", "memory = \"512MiB\"", true),
    key("console", "console = \"com1\"", false),
];

pub(crate) const SANDBOX_KEYS: [Key; 9] = [
    key("name", "name = \"alpha\"", true),
    key("app", "app = \"../apps/hello\"", true),
    key("runtime", "runtime = \"bare\"", false),
    key("cores", "cores = [1]", true),
    key("memory", "memory = \"64MiB\"", true),
    key("args", "args = [\"--verbose\"]", false),
    key("env", "env = { RUST_LOG = \"info\" }", false),
    key("devices", "devices = [{ port = \"0x2f8-0x2ff\" }]", false),
    key("on_fault", "on_fault = \"restart\"", false),
];

pub(crate) const CHANNEL_KEYS: [Key; 4] = [
    key("name", "name = \"ping-to-pong\"", true),
    key("writer", "writer = \"ping\"", true),
    key("reader", "reader = \"pong\"", true),
    key("size", "size = \"64KiB\"", true),
];

pub(crate) const DEVICE_KEYS: [Key; 1] = [key("port", "{ port = \"0x2f8-0x2ff\" }", true)];

pub(crate) const CONSOLES: [(&str, Console); 4] = [
    ("com1", Console::Com1),
    ("com2", Console::Com2),
    ("com3", Console::Com3),
    ("com4", Console::Com4),
];
pub(crate) const RUNTIMES: [(&str, Runtime); 2] =
    [("hermit", Runtime::Hermit), ("bare", Runtime::Bare)];
pub(crate) const ON_FAULT: [(&str, OnFault); 3] = [
    ("halt-sandbox", OnFault::HaltSandbox),
    ("restart", OnFault::Restart),
    ("halt-system", OnFault::HaltSystem),
];
