//! Semantic checks on a parsed draft: names, cores, memory, channels, devices, the memory
//! budget and the applications. Every check runs on whatever could be parsed, so one
//! run reports every problem; a value that could not be read is simply not checked again.

use super::app::AppCheck;
use super::budget;
use super::diag::Diagnostic;
use super::parse::{did_you_mean, Draft};
use super::schema::{DraftChannel, DraftSandbox};
use super::size::human;
use super::types::*;
use quest_abi::directory::MAX_DIRECTORY_ENTRIES;
use quest_abi::layout::{
    BARE_ARGS_MAX_SIZE, CHANNEL_ACK_SIZE, CHANNEL_WINDOW_SIZE, DIRECTORY_SIZE, MAX_RAM,
};
use quest_abi::{
    LARGE_PAGE_SIZE, MAX_CHANNELS, MAX_CORES, MAX_SANDBOXES, MAX_VCPUS_PER_SANDBOX, NAME_LEN,
    PAGE_SIZE,
};
use std::collections::HashMap;
use std::path::Path;

/// Runs every check, appending a diagnostic per problem.
pub(crate) fn validate(
    draft: &Draft,
    base_dir: &Path,
    apps: &dyn AppCheck,
    diags: &mut Vec<Diagnostic>,
) {
    let mut v = Validator { diags };
    if let Some(sys) = &draft.system {
        if let Some(name) = &sys.name {
            v.name(name, "system");
        }
        if let Some(cores) = &sys.cores {
            if cores.value == 0 || cores.value > MAX_CORES {
                v.diags.push(
                    Diagnostic::error(
                        format!(
                            "`cores` is {}, but a system has 1 to {MAX_CORES} cores",
                            cores.value
                        ),
                        cores.span.clone(),
                    )
                    .label("out of range")
                    .hint("the number of logical cores the target machine must have"),
                );
            }
        }
    }
    v.sandbox_count(draft);
    for s in &draft.sandboxes {
        if let Some(name) = &s.name {
            v.name(name, "sandbox");
        }
        v.memory(s);
        v.args(s);
    }
    for c in &draft.channels {
        if let Some(name) = &c.name {
            v.name(name, "channel");
        }
        v.channel_size(c);
        v.channel_traffic(c);
    }
    v.duplicates(draft.sandboxes.iter().map(|s| &s.name), "sandbox");
    v.duplicates(draft.channels.iter().map(|c| &c.name), "channel");
    v.cores(draft);
    v.migration(draft);
    v.endpoints(draft);
    v.channel_counts(draft);
    v.channel_windows(draft);
    v.devices(draft);
    v.budget(draft);
    v.apps(draft, base_dir, apps);
}

#[path = "validate_migration.rs"]
mod migration;

#[path = "validate_devices.rs"]
mod devices;

/// The name a sandbox uses in `migrate_by` for itself.
pub const MIGRATE_SELF: &str = "self";

/// The sandboxes' names in manifest order, each once (duplicates have their own error).
fn sandbox_names(draft: &Draft) -> Vec<&str> {
    let names: Vec<&str> = draft
        .sandboxes
        .iter()
        .filter_map(|s| s.name.as_ref())
        .map(|n| n.value.as_str())
        .collect();
    names
        .iter()
        .enumerate()
        .filter(|&(i, n)| !names[..i].contains(n))
        .map(|(_, n)| *n)
        .collect()
}

/// The error for `name`, which is none of the sandbox names `names`: "no sandbox named
/// `NAME`" then `context`, labelled `label`. Its hint is the closest name, or `list`
/// followed by all of them.
fn unknown_sandbox(
    name: &Spanned<String>,
    names: &[&str],
    context: &str,
    label: &str,
    list: &str,
) -> Diagnostic {
    let hint = match did_you_mean(&name.value, names.iter().copied()) {
        Some(m) => format!("did you mean `{m}`?"),
        None if names.is_empty() => "declare the sandbox with `[[sandbox]]`".to_owned(),
        None => format!(
            "{list}{}",
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Diagnostic::error(
        format!("no sandbox named `{}`{context}", name.value),
        name.span.clone(),
    )
    .label(label)
    .hint(hint)
}

struct Validator<'d> {
    diags: &'d mut Vec<Diagnostic>,
}

impl Validator<'_> {
    fn name(&mut self, name: &Spanned<String>, what: &str) {
        let n = &name.value;
        let max = NAME_LEN - 1;
        let problem = if n.is_empty() {
            Some("is empty".to_owned())
        } else if n.len() > max {
            Some(format!("is {} bytes long, more than {max}", n.len()))
        } else {
            n.chars()
                .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
                .map(|c| format!("contains {c:?}"))
        };
        if let Some(problem) = problem {
            self.diags.push(
                Diagnostic::error(format!("{what} name {problem}"), name.span.clone())
                    .label("invalid name")
                    .hint(format!(
                        "names are 1 to {max} characters from `a-z`, `0-9`, `_` and `-`"
                    )),
            );
        }
    }

    fn sandbox_count(&mut self, draft: &Draft) {
        if draft.sandboxes.is_empty() {
            let span = draft.system.as_ref().map_or(0..0, |s| s.header.clone());
            self.diags.push(
                Diagnostic::error("the system has no sandboxes", span)
                    .label("no `[[sandbox]]` in this manifest")
                    .hint("add a `[[sandbox]]` with `name`, `app`, `cores` and `memory`"),
            );
        }
        if let Some(extra) = draft.sandboxes.get(MAX_SANDBOXES) {
            self.diags.push(
                Diagnostic::error(
                    format!(
                        "{} sandboxes, but a system has at most {MAX_SANDBOXES}",
                        draft.sandboxes.len()
                    ),
                    extra.header.clone(),
                )
                .label(format!("sandbox number {} is here", MAX_SANDBOXES + 1))
                .hint("merge sandboxes or split the system"),
            );
        }
    }

    fn memory(&mut self, s: &DraftSandbox) {
        let (Some(mem), Some(runtime)) = (&s.memory, &s.runtime) else {
            return;
        };
        // Each runtime states the least RAM it runs in (and its manifest spelling).
        let rt = crate::runtime::of(runtime.value);
        let (min, rt) = (rt.min_memory(), rt.name());
        let span = mem.span.clone();
        if mem.value < min {
            self.diags.push(
                Diagnostic::error(
                    format!(
                        "sandbox memory {} is too small for a {rt} sandbox",
                        human(mem.value)
                    ),
                    span,
                )
                .label(format!("at least {}", human(min)))
                .hint(format!(
                    "a {rt} sandbox needs at least `memory = \"{}\"`",
                    human(min).replace(' ', "")
                )),
            );
        } else if mem.value > MAX_RAM {
            self.diags.push(
                Diagnostic::error(
                    format!(
                        "sandbox memory {} is more than a sandbox can have",
                        human(mem.value)
                    ),
                    span,
                )
                .label(format!("at most {}", human(MAX_RAM)))
                .hint("guest RAM ends where the channel window starts (256 GiB)"),
            );
        } else if mem.value % LARGE_PAGE_SIZE != 0 {
            let up = mem.value.next_multiple_of(LARGE_PAGE_SIZE);
            self.diags.push(
                Diagnostic::error(
                    format!(
                        "sandbox memory {} is not a multiple of 2 MiB",
                        human(mem.value)
                    ),
                    span,
                )
                .label("not 2 MiB aligned")
                .hint(format!(
                    "sandbox RAM is mapped with 2 MiB pages; use `\"{}\"`",
                    human(up).replace(' ', "")
                )),
            );
        }
    }

    fn args(&mut self, s: &DraftSandbox) {
        for a in &s.args {
            if a.value.contains('\0') {
                self.diags.push(
                    Diagnostic::error("argument contains a NUL character", a.span.clone())
                        .label("NUL here")
                        .hint("arguments are C-style strings; remove the `\\u0000`"),
                );
            }
        }
        for (k, v) in &s.env.1 {
            if k.value.is_empty() || k.value.contains(['=', '\0']) {
                self.diags.push(
                    Diagnostic::error(
                        format!("invalid environment variable name {:?}", k.value),
                        k.span.clone(),
                    )
                    .label("invalid name")
                    .hint("environment names are non-empty and contain no `=` or NUL"),
                );
            }
            if v.value.contains('\0') {
                self.diags.push(
                    Diagnostic::error("environment value contains a NUL character", v.span.clone())
                        .label("NUL here")
                        .hint("remove the `\\u0000`"),
                );
            }
        }
        let Some(Runtime::Bare) = s.runtime.as_ref().map(|r| r.value) else {
            return;
        };
        let needed = s.args.iter().map(|a| a.value.len() as u64 + 1).sum::<u64>()
            + s.env
                .1
                .iter()
                .map(|(k, v)| (k.value.len() + v.value.len()) as u64 + 2)
                .sum::<u64>();
        if needed > BARE_ARGS_MAX_SIZE {
            let span = s.args.first().map_or(s.env.0.clone(), |a| a.span.clone());
            self.diags.push(
                Diagnostic::error(format!("`args` and `env` need {needed} bytes, more than a bare sandbox's {BARE_ARGS_MAX_SIZE}"), span)
                    .label("too much")
                    .hint("pass large inputs through a channel instead"),
            );
        }
    }

    fn channel_size(&mut self, c: &DraftChannel) {
        let Some(size) = &c.size else { return };
        if size.value == 0 || size.value % PAGE_SIZE != 0 {
            // Rounding up cannot overflow below this; above it, round down instead.
            let up = size
                .value
                .max(1)
                .checked_next_multiple_of(PAGE_SIZE)
                .unwrap_or(size.value - size.value % PAGE_SIZE);
            self.diags.push(
                Diagnostic::error(
                    format!(
                        "channel size {} is not a positive multiple of 4 KiB",
                        human(size.value)
                    ),
                    size.span.clone(),
                )
                .label("not a whole number of 4 KiB pages")
                .hint(format!(
                    "channels are mapped in 4 KiB pages; use `\"{}\"`",
                    human(up).replace(' ', "")
                )),
            );
        }
    }

    /// The reader mode and the traffic the writer promises (used by `quest-build bounds`).
    fn channel_traffic(&mut self, c: &DraftChannel) {
        let poll = c
            .reader_mode
            .as_ref()
            .is_some_and(|m| m.value == ReaderMode::Poll);
        if let (Some(mode), None, true) = (&c.reader_mode, &c.poll_period, poll) {
            self.diags.push(
                Diagnostic::error(
                    "a channel read with `reader_mode = \"poll\"` needs `poll_period`",
                    mode.span.clone(),
                )
                .label("polling, but how often?")
                .hint("add `poll_period = \"100us\"`: how often the reader looks at the ring"),
            );
        }
        // An unreadable mode was reported already; the user may have meant "poll".
        if c.reader_mode.is_some() && !poll {
            for (key, value) in [
                ("poll_period", &c.poll_period),
                ("poll_jitter", &c.poll_jitter),
            ] {
                if let Some(v) = value {
                    self.diags.push(
                        Diagnostic::error(
                            format!("`{key}` applies only to a channel read with `reader_mode = \"poll\"`"),
                            v.span.clone(),
                        )
                        .label("the reader does not poll")
                        .hint(format!(
                            "add `reader_mode = \"poll\"` to this channel, or remove `{key}`"
                        )),
                    );
                }
            }
        }
        let positive = [
            (
                "poll_period",
                c.poll_period.as_ref(),
                "a reader that polls every 0 ns spins: write `reader_mode = \"spin\"`",
            ),
            (
                "min_interval",
                c.min_interval.as_ref(),
                "leave `min_interval` out if the writer promises no rate",
            ),
        ];
        for (key, value, hint) in positive {
            if let Some(v) = value.filter(|v| v.value == 0) {
                self.diags.push(
                    Diagnostic::error(format!("`{key}` must be longer than 0"), v.span.clone())
                        .label("zero")
                        .hint(hint),
                );
            }
        }
        if let Some(b) = c.burst.as_ref().filter(|b| b.value == 0) {
            self.diags.push(
                Diagnostic::error("`burst` must be at least 1", b.span.clone())
                    .label("zero")
                    .hint("the most messages the writer sends before the reader takes one; leave it out if unknown"),
            );
        }
        if let (Some(m), Some(size)) = (&c.max_message, &c.size) {
            let max = usize::try_from(size.value)
                .map(quest_channel::wire::max_message_len)
                .unwrap_or(usize::MAX) as u64;
            if m.value > max {
                self.diags.push(
                    Diagnostic::error(
                        format!(
                            "`max_message` is {}, but this channel's ring holds messages of at most {}",
                            human(m.value),
                            human(max)
                        ),
                        m.span.clone(),
                    )
                    .label("larger than the ring")
                    .hint(format!(
                        "lower `max_message` to {max} or raise `size` (the ring is `size` minus a 128-byte header)"
                    )),
                );
            }
        }
    }

    fn duplicates<'a>(
        &mut self,
        names: impl Iterator<Item = &'a Option<Spanned<String>>>,
        what: &str,
    ) {
        let mut seen: HashMap<&str, &Span> = HashMap::new();
        for name in names.flatten() {
            if let Some(first) = seen.get(name.value.as_str()) {
                self.diags.push(
                    Diagnostic::error(
                        format!("duplicate {what} name `{}`", name.value),
                        name.span.clone(),
                    )
                    .label("defined again here")
                    .related((*first).clone(), "first defined here")
                    .hint(format!("every {what} needs its own name")),
                );
            } else {
                seen.insert(&name.value, &name.span);
            }
        }
    }

    fn cores(&mut self, draft: &Draft) {
        let system_cores = draft.system.as_ref().and_then(|s| s.cores.as_ref());
        let mut owner: HashMap<u32, (&Span, &str)> = HashMap::new();
        for s in &draft.sandboxes {
            let Some(cores) = &s.cores else { continue };
            let name = s.name.as_ref().map_or("?", |n| n.value.as_str());
            if cores.value.is_empty() {
                self.diags.push(
                    Diagnostic::error(format!("sandbox `{name}` has no cores"), cores.span.clone())
                        .label("empty list")
                        .hint("give it at least one core, e.g. `cores = [1]`"),
                );
            }
            if cores.value.len() > MAX_VCPUS_PER_SANDBOX {
                self.diags.push(
                    Diagnostic::error(
                        format!(
                            "sandbox `{name}` has {} cores, more than {MAX_VCPUS_PER_SANDBOX}",
                            cores.value.len()
                        ),
                        cores.span.clone(),
                    )
                    .label("too many cores")
                    .hint("split the work over several sandboxes"),
                );
            }
            for core in &cores.value {
                if !self.core_exists(core, system_cores, "core") {
                    continue;
                }
                match owner.get(&core.value) {
                    Some((first, other)) => {
                        let msg = if *other == name {
                            format!("core {} is listed twice in sandbox `{name}`", core.value)
                        } else {
                            format!("core {} is already used by sandbox `{other}`", core.value)
                        };
                        self.diags.push(
                            Diagnostic::error(msg, core.span.clone())
                                .label("used again here")
                                .related((*first).clone(), "first used here")
                                .hint("every core belongs to exactly one sandbox"),
                        );
                    }
                    None => {
                        owner.insert(core.value, (&core.span, name));
                    }
                }
            }
        }
    }

    /// Whether `core` (a `what`) exists in a system of `system_cores`; reports it if not.
    fn core_exists(
        &mut self,
        core: &Spanned<u32>,
        system_cores: Option<&Spanned<u32>>,
        what: &str,
    ) -> bool {
        let Some(sys) = system_cores.filter(|s| core.value >= s.value && s.value > 0) else {
            return true;
        };
        self.diags.push(
            Diagnostic::error(
                format!(
                    "{what} {} does not exist: the system has {} cores (0 to {})",
                    core.value,
                    sys.value,
                    sys.value - 1
                ),
                core.span.clone(),
            )
            .label("no such core")
            .related(sys.span.clone(), "system cores set here")
            .hint("use a lower core index or raise `system.cores`"),
        );
        false
    }

    fn endpoints(&mut self, draft: &Draft) {
        let names = sandbox_names(draft);
        for c in &draft.channels {
            for end in [&c.writer, &c.reader].into_iter().flatten() {
                if names.contains(&end.value.as_str()) {
                    continue;
                }
                self.diags.push(unknown_sandbox(
                    end,
                    &names,
                    "",
                    "unknown sandbox",
                    "sandboxes are: ",
                ));
            }
            if let (Some(w), Some(r)) = (&c.writer, &c.reader) {
                if w.value == r.value {
                    self.diags.push(
                        Diagnostic::error(
                            format!(
                                "channel writer and reader are the same sandbox `{}`",
                                r.value
                            ),
                            r.span.clone(),
                        )
                        .label("same as the writer")
                        .related(w.span.clone(), "writer")
                        .hint("a channel connects two different sandboxes"),
                    );
                }
            }
        }
    }

    /// The system's channels must fit the monitor's table limit, and each sandbox's
    /// channels its channel directory page.
    fn channel_counts(&mut self, draft: &Draft) {
        if let Some(extra) = draft.channels.get(MAX_CHANNELS) {
            if let Some(span) = [&extra.name, &extra.writer, &extra.reader]
                .into_iter()
                .flatten()
                .map(|s| s.span.clone())
                .next()
            {
                self.diags.push(
                    Diagnostic::error(
                        format!(
                            "{} channels, but a system has at most {MAX_CHANNELS}",
                            draft.channels.len()
                        ),
                        span,
                    )
                    .label(format!("channel number {} is here", MAX_CHANNELS + 1))
                    .hint("the monitor places at most this many channels; merge channels"),
                );
            }
        }
        let mut count: HashMap<&str, usize> = HashMap::new();
        for c in &draft.channels {
            let mut ends: Vec<&Spanned<String>> =
                [&c.writer, &c.reader].into_iter().flatten().collect();
            ends.dedup_by(|a, b| a.value == b.value);
            for end in ends {
                let n = count.entry(&end.value).or_insert(0);
                *n += 1;
                if *n == MAX_DIRECTORY_ENTRIES + 1 {
                    self.diags.push(
                        Diagnostic::error(
                            format!(
                                "sandbox `{}` has more than {MAX_DIRECTORY_ENTRIES} channels",
                                end.value
                            ),
                            end.span.clone(),
                        )
                        .label("one channel too many")
                        .hint("a sandbox's channel directory is one 4 KiB page; merge channels"),
                    );
                }
            }
        }
    }

    /// Each sandbox's channels must fit in its channel window (with the directory page).
    fn channel_windows(&mut self, draft: &Draft) {
        let limit = CHANNEL_WINDOW_SIZE - DIRECTORY_SIZE;
        let mut used: HashMap<&str, u64> = HashMap::new();
        for c in &draft.channels {
            let Some(size) = &c.size else { continue };
            let bytes = size
                .value
                .checked_next_multiple_of(PAGE_SIZE)
                .unwrap_or(u64::MAX)
                .saturating_add(CHANNEL_ACK_SIZE);
            let mut ends: Vec<&str> = [&c.writer, &c.reader]
                .into_iter()
                .flatten()
                .map(|e| e.value.as_str())
                .collect();
            ends.dedup();
            for end in ends {
                let total = used.entry(end).or_insert(0);
                let before = *total;
                *total = total.saturating_add(bytes);
                if before <= limit && *total > limit {
                    self.diags.push(
                        Diagnostic::error(format!("the channels of sandbox `{end}` do not fit in its {} channel window", human(CHANNEL_WINDOW_SIZE)), size.span.clone())
                            .label("this channel goes over")
                            .hint("make the channels smaller"),
                    );
                }
            }
        }
    }

    fn budget(&mut self, draft: &Draft) {
        let Some(mem) = draft.system.as_ref().and_then(|s| s.memory.as_ref()) else {
            return;
        };
        // A sandbox with a separate standby region needs its RAM twice.
        let rams: Option<Vec<u64>> = draft
            .sandboxes
            .iter()
            .flat_map(|s| {
                let ram = s.memory.as_ref().map(|m| m.value);
                let twice = s.standby_cores.is_some()
                    && s.standby_memory
                        .as_ref()
                        .is_some_and(|m| m.value == StandbyMemory::Separate);
                std::iter::repeat_n(ram, if twice { 2 } else { 1 })
            })
            .collect();
        let chans: Option<Vec<u64>> = draft
            .channels
            .iter()
            .map(|c| c.size.as_ref().map(|s| budget::channel_bytes(s.value)))
            .collect();
        let (Some(rams), Some(chans)) = (rams, chans) else {
            return; // a size could not be read; its own diagnostic says so
        };
        let reserve = budget::monitor_reserve(draft.sandboxes.len());
        let need = budget::host_memory_needed(reserve, rams.iter().copied(), chans.iter().copied());
        if need > mem.value {
            let alloc = |v: &[u64]| {
                v.iter()
                    .fold(0u64, |a, &b| a.saturating_add(budget::host_allocation(b)))
            };
            self.diags.push(
                Diagnostic::error(format!("the system needs {} of memory, more than `system.memory` ({})", human(need), human(mem.value)), mem.span.clone())
                    .label(format!("at least {} needed", human(need)))
                    .hint(format!(
                        "first MiB {} + monitor {} + sandboxes {} + channels {} (each rounded up to 2 MiB); raise `memory` or shrink sandboxes",
                        human(budget::LOW_MEMORY_RESERVE), human(reserve), human(alloc(&rams)), human(alloc(&chans))
                    )),
            );
        }
    }

    fn apps(&mut self, draft: &Draft, base_dir: &Path, apps: &dyn AppCheck) {
        let mut checked: HashMap<&Path, Result<(), String>> = HashMap::new();
        for s in &draft.sandboxes {
            let Some(app) = &s.app else { continue };
            let result = checked
                .entry(&app.value)
                .or_insert_with(|| apps.check(&base_dir.join(&app.value)));
            if let Err(why) = result {
                self.diags.push(
                    Diagnostic::error(format!("`{}` is not a Cargo package with a binary target", app.value.display()), app.span.clone())
                        .label(why.clone())
                        .hint("`app` is the directory of a Cargo package (with a `src/main.rs` or a `[[bin]]`), relative to this manifest"),
                );
            }
        }
    }
}
