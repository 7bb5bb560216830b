//! The manifest's schema, each key described once: its name, doc, model type, how it is
//! read, whether it is required (or its default), and an example (used in hints). The
//! model structs ([`System`], [`Sandbox`], [`Channel`]), their drafts, the accepted-key
//! lists, the "did you mean" candidates, the reading and the completion are all derived
//! from these descriptions by [`manifest_table!`]. Also the spellings of the enumerated
//! values. `partition-manifests/README.md` documents the same keys.

use super::parse::fields::{
    Choice, CoreList, Devices, Duration, Env, Opt, Path, Size, Str, StringList, Uint32,
};
use super::parse::table::manifest_table;
use super::types::{
    Console, Device, Dma, DowntimeClock, IfAbsent, OnFault, ReaderMode, Runtime, Spanned,
    StandbyMemory,
};
use std::path::PathBuf;

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

manifest_table! {
    /// `[system]`: what the target machine must provide.
    table "`[system]`" => System, DraftSystem, SYSTEM_KEYS {
        /// `name`.
        name: Spanned<String> = Str, required, "name = \"demo\"";
        /// `cores`: logical cores the target must have.
        cores: Spanned<u32> = Uint32, required, "cores = 4";
        /// `memory`: RAM the target must have, in bytes.
        memory: Spanned<u64> = Size, required, "memory = \"512MiB\"";
        /// `console`: the monitor's serial port (default `com1`).
        console: Spanned<Console> = Choice<Console>, optional, "console = \"com1\"";
    }
}

manifest_table! {
    /// `[[sandbox]]`.
    table "`[[sandbox]]`" => Sandbox, DraftSandbox, SANDBOX_KEYS {
        /// `name`.
        name: Spanned<String> = Str, required, "name = \"alpha\"";
        /// `app`, as written (relative to the manifest's directory).
        app: Spanned<PathBuf> = Path, required, "app = \"../apps/hello\"";
        /// `runtime` (default `hermit`).
        runtime: Spanned<Runtime> = Choice<Runtime>, optional, "runtime = \"bare\"";
        /// `cores`: logical core indices (the list's span, then each element's).
        cores: Spanned<Vec<Spanned<u32>>> = CoreList, required, "cores = [1]";
        /// `memory` in bytes.
        memory: Spanned<u64> = Size, required, "memory = \"64MiB\"";
        /// `args`.
        args: Vec<Spanned<String>> = StringList, optional, "args = [\"--verbose\"]";
        /// `env`, in manifest order.
        env: Vec<(Spanned<String>, Spanned<String>)> = Env, optional, "env = { RUST_LOG = \"info\" }";
        /// `devices`.
        devices: Vec<Spanned<Device>> = Devices, optional, "devices = [{ pci = \"00:03.0\" }]";
        /// `on_fault` (default `halt-sandbox`).
        on_fault: Spanned<OnFault> = Choice<OnFault>, optional, "on_fault = \"restart\"";
        /// `standby_cores`: where the sandbox may migrate to, one core per vCPU (vCPU
        /// order), its own exclusively while it does not run there (default: none, it
        /// never migrates).
        standby_cores: Option<Spanned<Vec<Spanned<u32>>>> = Opt<CoreList>, optional, "standby_cores = [3]";
        /// `standby_memory`: `same` (a migration moves the cores only; default) or
        /// `separate` (the monitor places a second RAM region and a migration moves
        /// between the two).
        standby_memory: Spanned<StandbyMemory> = Choice<StandbyMemory>, optional, "standby_memory = \"separate\"";
        /// `migrate_by`: who may ask for its migration: `self` and/or names of
        /// controller sandboxes (default: nobody).
        migrate_by: Vec<Spanned<String>> = StringList, optional, "migrate_by = [\"self\", \"controller\"]";
        /// `max_downtime` (ns): the longest pause a migration may cause it.
        max_downtime: Option<Spanned<u64>> = Opt<Duration>, optional, "max_downtime = \"5ms\"";
        /// `downtime_clock`: whether a migration's pause shows on its clock: `elapses`
        /// (default: its TSC runs on through the pause, so deadlines keep their
        /// real-time meaning) or `hidden` (its TSC resumes where it stopped).
        downtime_clock: Spanned<DowntimeClock> = Choice<DowntimeClock>, optional, "downtime_clock = \"hidden\"";
    }
}

manifest_table! {
    /// `[[channel]]`.
    table "`[[channel]]`" => Channel, DraftChannel, CHANNEL_KEYS {
        /// `name`.
        name: Spanned<String> = Str, required, "name = \"ping-to-pong\"";
        /// `writer` sandbox name.
        writer: Spanned<String> = Str, required, "writer = \"ping\"";
        /// `reader` sandbox name.
        reader: Spanned<String> = Str, required, "reader = \"pong\"";
        /// `size` of the data area in bytes.
        size: Spanned<u64> = Size, required, "size = \"64KiB\"";
        /// `reader_mode`: how the reader notices a message (default `spin`).
        reader_mode: Spanned<ReaderMode> = Choice<ReaderMode>, optional, "reader_mode = \"poll\"";
        /// `poll_period` (ns): with `reader_mode = "poll"`, how often the reader looks.
        poll_period: Option<Spanned<u64>> = Opt<Duration>, optional, "poll_period = \"100us\"";
        /// `poll_jitter` (ns): how late a poll may come after its period (default 0).
        poll_jitter: Option<Spanned<u64>> = Opt<Duration>, optional, "poll_jitter = \"5us\"";
        /// `reader_work` (ns): the reader's own work per message, between one `recv` and
        /// its next (default 0).
        reader_work: Option<Spanned<u64>> = Opt<Duration>, optional, "reader_work = \"20us\"";
        /// `max_message`: the largest message the writer sends (default: what the ring holds).
        max_message: Option<Spanned<u64>> = Opt<Size>, optional, "max_message = \"4KiB\"";
        /// `min_interval` (ns): the least time between two sends (default: none promised).
        min_interval: Option<Spanned<u64>> = Opt<Duration>, optional, "min_interval = \"50us\"";
        /// `burst`: the most messages the writer sends without waiting for the reader to
        /// take one (default: none promised).
        burst: Option<Spanned<u32>> = Opt<Uint32>, optional, "burst = 16";
    }
}

/// The keys of a device table (`devices = [{ port = .. }]` or `[{ pci = .. }]`); exactly
/// one of `port` and `pci` is required, the others belong to one of them.
pub(crate) const DEVICE_KEYS: &[Key] = &[
    key("port", "{ port = \"0x2f8-0x2ff\" }", false),
    key("pci", "{ pci = \"00:03.0\" }", false),
    key("irq", "{ port = \"0x2f8-0x2ff\", irq = 3 }", false),
    key("index", "{ pci = \"1234:11e8\", index = 1 }", false),
    key("dma", "dma = \"unprotected\"", false),
    key("if_absent", "if_absent = \"start-without\"", false),
];

/// A value written as one of a fixed set of names.
pub(crate) trait Enumerated: Copy + 'static {
    /// Each name and its value, in the order hints list them.
    const NAMES: &'static [(&'static str, Self)];
    /// The value when the key is absent.
    const DEFAULT: Self;
}

/// Implements [`Enumerated`]: each name and its value, the first being the default.
macro_rules! enumerated {
    ($($T:ident { $($name:literal => $value:ident),+ $(,)? })*) => {$(
        impl Enumerated for $T {
            const NAMES: &'static [(&'static str, Self)] = &[$(($name, $T::$value)),+];
            const DEFAULT: Self = Self::NAMES[0].1;
        }
    )*};
}

enumerated! {
    Console { "com1" => Com1, "com2" => Com2, "com3" => Com3, "com4" => Com4 }
    Runtime { "hermit" => Hermit, "bare" => Bare }
    ReaderMode { "spin" => Spin, "poll" => Poll, "doorbell" => Doorbell }
    StandbyMemory { "same" => Same, "separate" => Separate }
    DowntimeClock { "elapses" => Elapses, "hidden" => Hidden }
    OnFault { "halt-sandbox" => HaltSandbox, "restart" => Restart, "halt-system" => HaltSystem }
    Dma { "protected" => Protected, "unprotected" => Unprotected }
    IfAbsent { "keep-stopped" => KeepStopped, "start-without" => StartWithout }
}
