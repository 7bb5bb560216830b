//! AMD-Vi (the AMD IOMMU), the parts that need no hardware: the ACPI IVRS table
//! ([`ivrs`]), a unit's registers, commands and event-log entries ([`regs`]), and what
//! a unit walks: the device table and each sandbox's I/O page tables ([`domain`]). The
//! monitor's `iommu` module finds the unit, builds these in its frames and programs it.
//!
//! Quest's use (AMD I/O Virtualization Technology (IOMMU) Specification, 48882, rev.
//! 3.x): one domain per sandbox that owns PCI functions, equal to its EPT/NPT without the
//! monitor's calibration page (host page tables, "v1" format); a device table entry that
//! translates through its domain for each function given to a sandbox, and one that
//! blocks every DMA for every other device ID; invalidation through the command buffer;
//! faults from the event log, signalled by an NMI (the unit's MSI).

pub mod domain;
pub mod intremap;
pub mod ivrs;
pub mod regs;
