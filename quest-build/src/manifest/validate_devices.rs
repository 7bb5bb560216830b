//! Checks of the `devices` key: port ranges (not the console's, not the PCI configuration
//! ports, not another sandbox's), IRQ lines (a legacy line, not the cascade or the
//! console's, not shared) and PCI functions (each given once).

use super::Validator;
use crate::manifest::diag::Diagnostic;
use crate::manifest::parse::Draft;
use crate::manifest::types::{Device, PciSelector, Span};
use quest_abi::{console_irq, CASCADE_IRQ, CONSOLE_PORT_SPAN, MAX_IRQ, PCI_CONFIG_PORTS};

impl Validator<'_> {
    pub(super) fn devices(&mut self, draft: &Draft) {
        let console = draft.system.as_ref().and_then(|s| s.console.as_ref());
        let mut ports: Vec<(u16, u16, &Span, &str)> = Vec::new();
        let mut irqs: Vec<(u32, &Span, &str)> = Vec::new();
        let mut functions: Vec<(PciSelector, &Span, &str)> = Vec::new();
        for s in &draft.sandboxes {
            let name = s.name.as_ref().map_or("?", |n| n.value.as_str());
            for d in &s.devices {
                match &d.value {
                    &Device::Ports {
                        first,
                        last,
                        ref irq,
                    } => {
                        if let Some(irq) = irq {
                            self.irq(irq.value, &irq.span, console, &irqs);
                            irqs.push((irq.value, &irq.span, name));
                        }
                        if self.port_range(first, last, &d.span, console, &ports) {
                            ports.push((first, last, &d.span, name));
                        }
                    }
                    Device::Pci(p) => {
                        if let Some((_, other_span, other)) =
                            functions.iter().find(|(f, _, _)| *f == p.select)
                        {
                            let msg = if *other == name {
                                format!(
                                    "PCI function {} is listed twice for sandbox `{name}`",
                                    p.select
                                )
                            } else {
                                format!(
                                    "PCI function {} is already given to sandbox `{other}`",
                                    p.select
                                )
                            };
                            self.diags.push(
                                Diagnostic::error(msg, d.span.clone())
                                    .label("given twice")
                                    .related((*other_span).clone(), "first given here")
                                    .hint("a PCI function belongs to at most one sandbox; name another function (`index` picks the n-th with the same ID)"),
                            );
                            continue;
                        }
                        functions.push((p.select, &d.span, name));
                    }
                }
            }
        }
    }

    /// Checks one port range against the console, the PCI configuration ports and the
    /// ranges already `taken`; true when it is free.
    fn port_range(
        &mut self,
        first: u16,
        last: u16,
        span: &Span,
        console: Option<&crate::manifest::types::Spanned<crate::manifest::types::Console>>,
        taken: &[(u16, u16, &Span, &str)],
    ) -> bool {
        if let Some(c) = console {
            let (cf, cl) = (c.value.port(), c.value.port() + (CONSOLE_PORT_SPAN - 1));
            if first <= cl && cf <= last {
                self.diags.push(
                    Diagnostic::error(format!("ports {first:#x}-{last:#x} collide with the monitor console {} ({cf:#x}-{cl:#x})", c.value.name()), span.clone())
                        .label("the monitor's serial port")
                        .hint("give the sandbox another serial port, or move the monitor with `system.console`"),
                );
                return false;
            }
        }
        let (pf, pl) = PCI_CONFIG_PORTS;
        if first <= pl && pf <= last {
            self.diags.push(
                Diagnostic::error(format!("ports {first:#x}-{last:#x} include the PCI configuration ports ({pf:#x}-{pl:#x})"), span.clone())
                    .label("the monitor's")
                    .hint("the monitor serves PCI configuration space to each sandbox; give it a PCI function with `{ pci = \"00:03.0\" }` instead"),
            );
            return false;
        }
        if let Some((_, _, other_span, other)) =
            taken.iter().find(|(f, l, _, _)| first <= *l && *f <= last)
        {
            self.diags.push(
                Diagnostic::error(
                    format!("ports {first:#x}-{last:#x} overlap ports of sandbox `{other}`"),
                    span.clone(),
                )
                .label("overlapping range")
                .related((*other_span).clone(), "already assigned here")
                .hint("a port belongs to at most one sandbox"),
            );
            return false;
        }
        true
    }

    /// Checks one IRQ line: a legacy line, not the cascade, not the console's, not one
    /// of the lines already `taken`.
    fn irq(
        &mut self,
        irq: u32,
        span: &Span,
        console: Option<&crate::manifest::types::Spanned<crate::manifest::types::Console>>,
        taken: &[(u32, &Span, &str)],
    ) {
        if irq > MAX_IRQ {
            self.diags.push(
                Diagnostic::error(format!("IRQ {irq} is not a legacy IRQ line (0 to {MAX_IRQ})"), span.clone())
                    .label("out of range")
                    .hint("`irq` is the ISA line the ports' device raises: COM1/COM3 use 4, COM2/COM4 use 3"),
            );
        } else if irq == CASCADE_IRQ {
            self.diags.push(
                Diagnostic::error(
                    format!("IRQ {CASCADE_IRQ} is the cascade of the two interrupt controllers"),
                    span.clone(),
                )
                .label("no device raises it")
                .hint("a device wired to line 2 of the bus raises IRQ 9; write `irq = 9`"),
            );
        } else if let Some(c) = console.filter(|c| console_irq(c.value.port()) == irq) {
            self.diags.push(
                Diagnostic::error(format!("IRQ {irq} is the monitor console's ({})", c.value.name()), span.clone())
                    .label("the monitor's serial port raises it")
                    .hint("give the sandbox a device on another line, or move the monitor with `system.console`"),
            );
        } else if let Some((_, other_span, other)) = taken.iter().find(|(l, _, _)| *l == irq) {
            self.diags.push(
                Diagnostic::error(format!("IRQ {irq} is already given to sandbox `{other}`"), span.clone())
                    .label("shared line")
                    .related((*other_span).clone(), "first given here")
                    .hint("a legacy IRQ line is not shared between devices; give each device its own line"),
            );
        }
    }
}
