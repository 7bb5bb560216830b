//! Intel VT-d (DMA remapping), the parts that need no hardware: the ACPI DMAR table
//! ([`dmar`]), a unit's registers and fault records ([`regs`]), and the tables a unit
//! walks: root and context entries and each sandbox's domain ([`domain`]). The monitor's
//! `iommu` module finds the unit, builds these in its frames and programs it.
//!
//! Quest's use (VT-d spec rev. 4.1, legacy mode): one domain per sandbox that owns PCI
//! functions, equal to its EPT/NPT without the monitor's calibration page; a context
//! entry only for the functions given to a sandbox (every other function's requests
//! fault: no context entry); register-based invalidation; faults reported by an NMI.
//! Interrupt remapping ([`intremap`]), where every unit supports it: queued invalidation,
//! one remapping table, every device and I/O APIC interrupt remappable, compatibility
//! format blocked.

pub mod dmar;
pub mod domain;
pub mod intremap;
pub mod regs;
