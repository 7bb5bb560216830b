//! Manifests built in code for the planner's tests (no parser involved), and a proptest
//! strategy for valid manifests.

use crate::manifest::*;
use proptest::prelude::*;
use std::path::PathBuf;

const MIB: u64 = 1 << 20;

fn sp<T>(value: T) -> Spanned<T> {
    Spanned::new(value, 0..0)
}

/// One sandbox of a test manifest.
#[derive(Clone, Debug)]
pub(crate) struct SandboxSpec {
    pub name: String,
    pub runtime: Runtime,
    pub cores: Vec<u32>,
    pub memory: u64,
    pub ports: Vec<(u16, u16)>,
}

impl SandboxSpec {
    pub fn new(name: &str, runtime: Runtime, cores: &[u32], memory_mib: u64) -> Self {
        Self {
            name: name.into(),
            runtime,
            cores: cores.to_vec(),
            memory: memory_mib * MIB,
            ports: Vec::new(),
        }
    }
}

/// A manifest with these sandboxes and channels `(name, writer, reader, size)`.
pub(crate) fn manifest(
    cores: u32,
    memory_mib: u64,
    sandboxes: &[SandboxSpec],
    channels: &[(&str, &str, &str, u64)],
) -> Manifest {
    Manifest {
        path: PathBuf::from("test.toml"),
        base_dir: PathBuf::from("/manifests"),
        source: String::new(),
        system: System {
            name: sp("test".into()),
            cores: sp(cores),
            memory: sp(memory_mib * MIB),
            console: sp(Console::Com1),
        },
        sandboxes: sandboxes
            .iter()
            .map(|s| Sandbox {
                name: sp(s.name.clone()),
                app: sp(PathBuf::from(format!("apps/{}", s.name))),
                runtime: sp(s.runtime),
                cores: sp(s.cores.iter().map(|&c| sp(c)).collect()),
                memory: sp(s.memory),
                args: vec![sp("--fast".into())],
                env: vec![(sp("MODE".into()), sp("test".into()))],
                devices: s
                    .ports
                    .iter()
                    .map(|&(first, last)| {
                        sp(Device::Ports {
                            first,
                            last,
                            irq: None,
                        })
                    })
                    .collect(),
                on_fault: sp(OnFault::HaltSandbox),
                standby_cores: None,
                standby_memory: sp(StandbyMemory::Same),
                migrate_by: Vec::new(),
                max_downtime: None,
                downtime_clock: sp(DowntimeClock::Elapses),
            })
            .collect(),
        channels: channels
            .iter()
            .map(|&(name, writer, reader, size)| Channel {
                name: sp(name.into()),
                writer: sp(writer.into()),
                reader: sp(reader.into()),
                size: sp(size),
                reader_mode: sp(ReaderMode::Spin),
                poll_period: None,
                poll_jitter: None,
                reader_work: None,
                max_message: None,
                min_interval: None,
                burst: None,
            })
            .collect(),
    }
}

/// [`pingpong`]'s plan and table, shown by `render` (the report, the JSON) as for a
/// manifest in `/manifests`.
pub(crate) fn render_pingpong(
    render: fn(&super::Plan, &super::EncodedTable, &std::path::Path) -> String,
) -> (super::Plan, super::EncodedTable, String) {
    let p = super::plan(&pingpong());
    let t = super::encode_table(&p, None).unwrap();
    let text = render(&p, &t, std::path::Path::new("/manifests"));
    (p, t, text)
}

/// Two sandboxes, a channel each way, a serial port passed through.
pub(crate) fn pingpong() -> Manifest {
    let mut pong = SandboxSpec::new("pong", Runtime::Bare, &[1, 2], 8);
    pong.ports.push((0x2f8, 0x2ff));
    manifest(
        4,
        256,
        &[SandboxSpec::new("ping", Runtime::Hermit, &[0], 64), pong],
        &[
            ("ping-to-pong", "ping", "pong", 64 << 10),
            ("pong-to-ping", "pong", "ping", 5000),
        ],
    )
}

/// Valid manifests: 1 to 6 sandboxes on distinct cores (1 to 4 each, shuffled), RAM
/// 4 to 64 MiB in 2 MiB steps, both runtimes, up to 10 channels between distinct
/// sandboxes, some with a port range.
pub(crate) fn arb_manifest() -> impl Strategy<Value = Manifest> {
    let sandbox = (1usize..=4, any::<bool>(), 2u64..=32, any::<bool>());
    proptest::collection::vec(sandbox, 1..=6)
        .prop_flat_map(|sbs| {
            let total: usize = sbs.iter().map(|s| s.0).sum();
            let n = sbs.len();
            let cores = Just((0..total as u32).collect::<Vec<_>>()).prop_shuffle();
            let chans = proptest::collection::vec((0..n, 1..n.max(2), 1u64..(1 << 21)), 0..=10);
            (Just(sbs), cores, chans, 0u32..4)
        })
        .prop_map(|(sbs, cores, chans, spare_cores)| {
            let mut next = 0;
            let specs: Vec<SandboxSpec> = sbs
                .iter()
                .enumerate()
                .map(|(i, &(k, bare, mem2, port))| {
                    let runtime = if bare { Runtime::Bare } else { Runtime::Hermit };
                    let mut s =
                        SandboxSpec::new(&format!("s{i}"), runtime, &cores[next..next + k], 0);
                    s.memory = mem2 * 2 * MIB;
                    if port {
                        let base = 0x100 + 0x10 * i as u16;
                        s.ports.push((base, base + 7));
                    }
                    next += k;
                    s
                })
                .collect();
            let n = specs.len();
            let names: Vec<(String, String, String, u64)> = if n < 2 {
                Vec::new()
            } else {
                chans
                    .iter()
                    .enumerate()
                    .map(|(i, &(w, off, size))| {
                        let r = (w + off) % n;
                        (format!("c{i}"), format!("s{w}"), format!("s{r}"), size)
                    })
                    .collect()
            };
            let chans: Vec<(&str, &str, &str, u64)> = names
                .iter()
                .map(|(a, b, c, s)| (a.as_str(), b.as_str(), c.as_str(), *s))
                .collect();
            manifest(cores.len() as u32 + spare_cores, 4096, &specs, &chans)
        })
}
