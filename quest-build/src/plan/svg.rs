//! The plan as an SVG picture (`quest-build plan --svg FILE`): the cores, each sandbox as
//! a card with its memory, channels as arrows between the cards, and the host memory
//! budget as one bar. Pure text output, deterministic; no fonts or scripts needed.

use super::types::{Plan, Role};
use super::units::size;
use crate::manifest::budget::{host_allocation, LOW_MEMORY_RESERVE};
use quest_abi::Runtime;
use std::fmt::Write;

/// Narrowest picture; it grows so that every sandbox card gets [`MIN_CARD_W`].
const MIN_WIDTH: f64 = 1000.0;
const MIN_CARD_W: f64 = 200.0;
const CARD_GAP: f64 = 16.0;
const MARGIN: f64 = 20.0;
const FONT: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
/// Sandbox colours (Tableau 10), cycled.
const COLORS: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
    "#ff9da7", "#bab0ac",
];
const IDLE: &str = "#e8e8e8";
const MONITOR: &str = "#555555";
const LOW: &str = "#222222";
const CHANNEL: &str = "#9aa7b8";

const CORE_BOX_H: f64 = 40.0;
const CORES_PER_ROW: u32 = 16;
const CARD_LINE: f64 = 16.0;
const ARC_STEP: f64 = 26.0;

fn color(sandbox: usize) -> &'static str {
    COLORS[sandbox % COLORS.len()]
}

/// Text colour that reads on [`color`]`(sandbox)`: dark on the light ones.
fn on_color(sandbox: usize) -> &'static str {
    match COLORS[sandbox % COLORS.len()] {
        "#edc948" | "#ff9da7" | "#bab0ac" | "#76b7b2" => "#222222",
        _ => "#ffffff",
    }
}

/// Escapes text for SVG content and attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Shortens `s` to at most `max` characters, with an ellipsis.
fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

struct Svg {
    body: String,
}

impl Svg {
    fn rect(&mut self, x: f64, y: f64, w: f64, h: f64, fill: &str, extra: &str) {
        let _ = writeln!(
            self.body,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{fill}" {extra}/>"#
        );
    }
    fn text(&mut self, x: f64, y: f64, size: f64, anchor: &str, extra: &str, text: &str) {
        let _ = writeln!(
            self.body,
            r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{anchor}" {extra}>{}</text>"#,
            esc(text)
        );
    }
}

/// A sandbox card's text lines below its header.
fn card_lines(plan: &Plan, s: usize) -> Vec<String> {
    let sb = &plan.sandboxes[s];
    let cores: Vec<String> = sb.vcpus.iter().map(|v| v.core.to_string()).collect();
    let mut lines = vec![
        format!(
            "{} vCPU{} on core{} {}",
            sb.vcpus.len(),
            if sb.vcpus.len() == 1 { "" } else { "s" },
            if cores.len() == 1 { "" } else { "s" },
            cores.join(", ")
        ),
        format!("entry image at {:#x}", sb.boot.image_gpa),
    ];
    for end in &sb.channel_ends {
        let name = plan.channels.get(end.channel).map_or("?", |c| &c.name);
        let arrow = match end.role {
            Role::Writer => "→",
            Role::Reader => "←",
        };
        lines.push(format!("{arrow} {name} @ {:#x}", end.data_gpa));
    }
    for d in &sb.devices {
        lines.push(d.describe());
    }
    lines
}

/// Renders the picture.
pub fn render(plan: &Plan) -> String {
    let mut svg = Svg {
        body: String::new(),
    };
    let n = plan.sandboxes.len().max(1);
    let width = MIN_WIDTH.max(2.0 * MARGIN + n as f64 * (MIN_CARD_W + CARD_GAP) - CARD_GAP);
    let inner = width - 2.0 * MARGIN;
    let mut y = MARGIN + 18.0;
    svg.text(
        MARGIN,
        y,
        18.0,
        "start",
        r#"font-weight="bold""#,
        &format!(
            "{}: {} cores, {} RAM, {} sandbox{}, {} channel{}",
            plan.system_name,
            plan.system_cores,
            size(plan.system_memory),
            plan.sandboxes.len(),
            if plan.sandboxes.len() == 1 { "" } else { "es" },
            plan.channels.len(),
            if plan.channels.len() == 1 { "" } else { "s" },
        ),
    );

    // Cores: one box each, coloured by the sandbox that owns it.
    y += 26.0;
    svg.text(MARGIN, y, 13.0, "start", r#"font-weight="bold""#, "cores");
    y += 8.0;
    let per_row = plan.system_cores.clamp(1, CORES_PER_ROW);
    let core_w = (inner / f64::from(per_row)).min(110.0);
    for core in 0..plan.system_cores {
        let (row, col) = (core / per_row, core % per_row);
        let x = MARGIN + f64::from(col) * core_w;
        let cy = y + f64::from(row) * (CORE_BOX_H + 6.0);
        let owner = plan.sandboxes.iter().enumerate().find_map(|(s, sb)| {
            sb.vcpus
                .iter()
                .find(|v| v.core == core)
                .map(|v| (s, sb, v.index))
        });
        let max_chars = ((core_w - 8.0) / 6.0).max(3.0) as usize;
        let (fill, label, fg) = match owner {
            Some((s, sb, v)) => {
                let full = format!("{} v{v}", sb.name);
                let label = if full.chars().count() <= max_chars {
                    full
                } else {
                    fit(&sb.name, max_chars)
                };
                (color(s), label, on_color(s))
            }
            None => (IDLE, "idle".to_owned(), "#666666"),
        };
        svg.rect(x + 2.0, cy, core_w - 4.0, CORE_BOX_H, fill, r#"rx="4""#);
        let fill_attr = format!(r#"fill="{fg}""#);
        svg.text(
            x + core_w / 2.0,
            cy + 16.0,
            12.0,
            "middle",
            &fill_attr,
            &format!("core {core}"),
        );
        svg.text(
            x + core_w / 2.0,
            cy + 32.0,
            10.0,
            "middle",
            &fill_attr,
            &fit(&label, max_chars),
        );
    }
    let core_rows = plan.system_cores.div_ceil(per_row).max(1);
    y += f64::from(core_rows) * (CORE_BOX_H + 6.0) + 18.0;

    // Sandbox cards in one row; channel arcs above (leftward) and below (rightward).
    svg.text(
        MARGIN,
        y,
        13.0,
        "start",
        r#"font-weight="bold""#,
        "sandboxes and channels (arrows: writer → reader, data size)",
    );
    y += 8.0;
    let gap = CARD_GAP;
    let card_w = ((inner - gap * (n as f64 - 1.0)) / n as f64).min(300.0);
    let row_w = card_w * n as f64 + gap * (n as f64 - 1.0);
    let card_x = |s: usize| MARGIN + (inner - row_w) / 2.0 + s as f64 * (card_w + gap);
    let leftward = plan.channels.iter().filter(|c| c.writer > c.reader).count();
    let rightward = plan.channels.len() - leftward;
    let arcs_above = if leftward > 0 {
        ARC_STEP * (leftward as f64 + 1.0)
    } else {
        0.0
    };
    let arcs_below = if rightward > 0 {
        ARC_STEP * (rightward as f64 + 1.0)
    } else {
        0.0
    };
    let card_top = y + arcs_above;
    let lines: Vec<Vec<String>> = (0..plan.sandboxes.len())
        .map(|s| card_lines(plan, s))
        .collect();
    let max_lines = lines.iter().map(Vec::len).max().unwrap_or(0) as f64;
    let header_h = 38.0;
    let bar_h = 30.0;
    let card_h = header_h + bar_h + 14.0 + max_lines * CARD_LINE + 8.0;
    let max_ram = plan
        .sandboxes
        .iter()
        .map(|s| s.ram_size)
        .max()
        .unwrap_or(1)
        .max(1);
    let chars = ((card_w - 16.0) / 6.2).max(4.0) as usize;
    for (s, sb) in plan.sandboxes.iter().enumerate() {
        let x = card_x(s);
        let c = color(s);
        svg.rect(
            x,
            card_top,
            card_w,
            card_h,
            "#ffffff",
            &format!(r#"stroke="{c}" stroke-width="2" rx="6""#),
        );
        svg.rect(x, card_top, card_w, header_h, c, r#"rx="6""#);
        svg.text(
            x + 8.0,
            card_top + 17.0,
            14.0,
            "start",
            &format!(r#"fill="{}" font-weight="bold""#, on_color(s)),
            &fit(&sb.name, ((card_w - 16.0) / 9.0).max(4.0) as usize),
        );
        let rt = match sb.runtime {
            Runtime::Bare => "bare",
            Runtime::Hermit => "hermit",
        };
        svg.text(
            x + 8.0,
            card_top + 32.0,
            11.0,
            "start",
            &format!(r#"fill="{}""#, on_color(s)),
            &format!("{rt} runtime"),
        );
        // Guest RAM bar, scaled to the largest sandbox.
        let by = card_top + header_h + 8.0;
        let full = card_w - 16.0;
        let w = (full * sb.ram_size as f64 / max_ram as f64).max(3.0);
        svg.rect(x + 8.0, by, full, 14.0, IDLE, r#"rx="2""#);
        svg.rect(x + 8.0, by, w, 14.0, c, r#"rx="2" fill-opacity="0.75""#);
        svg.text(
            x + 8.0,
            by + 26.0,
            11.0,
            "start",
            "",
            &format!("{} guest RAM", size(sb.ram_size)),
        );
        let mut ly = by + bar_h + 12.0;
        for line in &lines[s] {
            svg.text(
                x + 8.0,
                ly,
                11.0,
                "start",
                r##"fill="#333333""##,
                &fit(line, chars),
            );
            ly += CARD_LINE;
        }
    }
    let card_bottom = card_top + card_h;
    let (mut above, mut below) = (0usize, 0usize);
    for (i, ch) in plan.channels.iter().enumerate() {
        if ch.writer >= plan.sandboxes.len() || ch.reader >= plan.sandboxes.len() {
            continue;
        }
        let left = ch.writer > ch.reader;
        let level = if left { &mut above } else { &mut below };
        *level += 1;
        let h = ARC_STEP * *level as f64;
        // Spread endpoints a little so several arcs at one card stay apart.
        let spread = |s: usize| card_x(s) + card_w / 2.0 + ((i % 5) as f64 - 2.0) * 10.0;
        let (x1, x2) = (spread(ch.writer), spread(ch.reader));
        let (y0, ym) = if left {
            (card_top, card_top - h)
        } else {
            (card_bottom, card_bottom + h)
        };
        let c = color(ch.writer);
        let _ = writeln!(
            svg.body,
            r#"<path d="M {x1:.1} {y0:.1} L {x1:.1} {ym:.1} L {x2:.1} {ym:.1} L {x2:.1} {y0:.1}" fill="none" stroke="{c}" stroke-width="2" marker-end="url(#arrow{})"/>"#,
            ch.writer % COLORS.len()
        );
        let label = format!("{} ({})", ch.name, size(ch.data_size));
        let lx = (x1 + x2) / 2.0;
        let lw = label.chars().count() as f64 * 6.3 + 8.0;
        svg.rect(
            lx - lw / 2.0,
            ym - 8.0,
            lw,
            16.0,
            "#ffffff",
            r#"fill-opacity="0.9""#,
        );
        svg.text(
            lx,
            ym + 4.0,
            11.0,
            "middle",
            &format!(r#"fill="{c}""#),
            &label,
        );
    }
    y = card_bottom + arcs_below + 30.0;

    // Host memory: one bar for the whole machine.
    svg.text(
        MARGIN,
        y,
        13.0,
        "start",
        r#"font-weight="bold""#,
        &format!(
            "host memory: {} of {} needed (monitor, sandbox RAM and channels, each 2 MiB-aligned)",
            size(plan.host_memory_needed),
            size(plan.system_memory)
        ),
    );
    y += 8.0;
    let total = plan.system_memory.max(plan.host_memory_needed).max(1) as f64;
    let mut parts: Vec<(String, u64, &str)> = vec![
        ("low memory".to_owned(), LOW_MEMORY_RESERVE, LOW),
        ("monitor".to_owned(), plan.monitor_reserve, MONITOR),
    ];
    for (s, sb) in plan.sandboxes.iter().enumerate() {
        parts.push((sb.name.clone(), host_allocation(sb.ram_size), color(s)));
    }
    let channel_bytes: u64 = plan
        .channels
        .iter()
        .map(|c| host_allocation(c.data_size.saturating_add(c.ack_size)))
        .fold(0, u64::saturating_add);
    if channel_bytes > 0 {
        parts.push(("channels".to_owned(), channel_bytes, CHANNEL));
    }
    svg.rect(MARGIN, y, inner, 24.0, IDLE, "");
    let mut x = MARGIN;
    for (_, bytes, fill) in &parts {
        let w = inner * *bytes as f64 / total;
        svg.rect(
            x,
            y,
            w,
            24.0,
            fill,
            r##"stroke="#ffffff" stroke-width="1""##,
        );
        x += w;
    }
    // Legend below the bar, wrapping.
    y += 42.0;
    let free = plan.system_memory.saturating_sub(plan.host_memory_needed);
    parts.push(("free".to_owned(), free, IDLE));
    let mut lx = MARGIN;
    for (name, bytes, fill) in &parts {
        let label = format!("{} {}", fit(name, 24), size(*bytes));
        let w = label.chars().count() as f64 * 6.6 + 26.0;
        if lx + w > width - MARGIN {
            lx = MARGIN;
            y += 20.0;
        }
        svg.rect(
            lx,
            y - 10.0,
            12.0,
            12.0,
            fill,
            r##"stroke="#999999" stroke-width="0.5""##,
        );
        svg.text(lx + 16.0, y, 11.0, "start", "", &label);
        lx += w;
    }
    let height = y + MARGIN;

    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="{FONT}">"#
    );
    out.push_str("<defs>\n");
    for (i, c) in COLORS.iter().enumerate() {
        let _ = writeln!(
            out,
            r#"<marker id="arrow{i}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="{c}"/></marker>"#
        );
    }
    out.push_str("</defs>\n");
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    out.push_str(&svg.body);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{plan, testing};

    #[test]
    fn picture_shows_cores_sandboxes_channels_and_memory() {
        let p = plan(&testing::pingpong());
        let svg = render(&p);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        for core in 0..4 {
            assert!(svg.contains(&format!(">core {core}</text>")), "{svg}");
        }
        assert!(svg.contains(">pong v1</text>"));
        assert!(svg.contains(">idle</text>"));
        assert!(svg.contains(">ping-to-pong (64 KiB)</text>"));
        assert!(svg.contains(">pong-to-ping (8 KiB)</text>"));
        assert_eq!(
            svg.matches("marker-end=").count(),
            2,
            "one arrow per channel"
        );
        assert!(svg.contains(">64 MiB guest RAM</text>"));
        let free = size(p.system_memory - p.host_memory_needed);
        assert!(svg.contains(&format!(">free {free}</text>")), "{svg}");
        assert!(svg.contains(">monitor 36 MiB</text>"), "{svg}");
        assert_eq!(svg, render(&p), "deterministic");
    }

    #[test]
    fn names_are_escaped() {
        let mut p = plan(&testing::pingpong());
        p.sandboxes[0].name = "a<b&c".into();
        let svg = render(&p);
        assert!(svg.contains("a&lt;b&amp;c"));
        assert!(!svg.contains("a<b"));
    }
}
