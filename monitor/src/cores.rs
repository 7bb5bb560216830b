//! The machine's processors, from the ACPI MADT: logical core index 0 is the boot core,
//! then every other enabled processor in MADT order.

use crate::bootinfo::AcpiRoot;
use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use core::fmt;
use core::ptr::NonNull;
use quest_abi::MAX_CORES;

/// MADT local-APIC flag: the processor is enabled.
const PROCESSOR_ENABLED: u32 = 1;

/// The monitor's memory is identity mapped, so "mapping" a physical region is a cast.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdentityMapped;

impl AcpiHandler for IdentityMapped {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        // The caller's contract (a valid `T` at that address) carries over; the identity
        // map covers every address below 4 GiB where firmware tables live.
        let virt = NonNull::new(physical_address as *mut T).unwrap_or(NonNull::dangling());
        // SAFETY: identity mapping: the virtual address is the physical one, `size` bytes.
        unsafe { PhysicalMapping::new(physical_address, virt, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// The x2APIC IDs of the machine's cores, by logical index.
#[derive(Clone, Copy, Debug)]
pub struct Cores {
    ids: [u32; MAX_CORES as usize],
    count: usize,
}

impl Cores {
    /// x2APIC ID per logical core index.
    pub fn apic_ids(&self) -> &[u32] {
        &self.ids[..self.count]
    }
}

/// Why the processors could not be listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoresError {
    /// GRUB gave no ACPI RSDP.
    NoAcpi,
    /// The RSDT/XSDT could not be read.
    BadRootTable,
    /// There is no MADT.
    NoMadt,
}

impl fmt::Display for CoresError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoAcpi => "the boot loader found no ACPI tables; cannot list the processors",
            Self::BadRootTable => "the ACPI root table (RSDT/XSDT) is invalid",
            Self::NoMadt => "the ACPI tables have no MADT; cannot list the processors",
        })
    }
}

/// Lists the enabled processors; `boot_apic_id` becomes core 0.
///
/// # Safety
/// `root` must come from the firmware's RSDP (the tables are read in place).
pub unsafe fn discover(root: Option<AcpiRoot>, boot_apic_id: u32) -> Result<Cores, CoresError> {
    let root = root.ok_or(CoresError::NoAcpi)?;
    // SAFETY: per the contract; the crate validates signatures and checksums.
    let tables =
        unsafe { AcpiTables::from_rsdt(IdentityMapped, root.revision, root.address as usize) }
            .map_err(|_| CoresError::BadRootTable)?;
    let madt = tables
        .find_table::<Madt>()
        .map_err(|_| CoresError::NoMadt)?;
    let mut cores = Cores {
        ids: [0; MAX_CORES as usize],
        count: 1,
    };
    cores.ids[0] = boot_apic_id;
    for entry in madt.get().entries() {
        let (id, flags) = match entry {
            MadtEntry::LocalApic(e) => (e.apic_id as u32, e.flags),
            MadtEntry::LocalX2Apic(e) => (e.x2apic_id, e.flags),
            _ => continue,
        };
        let known = cores.apic_ids().contains(&id);
        if flags & PROCESSOR_ENABLED == 0 || known || cores.count == cores.ids.len() {
            continue;
        }
        cores.ids[cores.count] = id;
        cores.count += 1;
    }
    Ok(cores)
}
