//! AMD-Vi interrupt remapping (see [`super`]'s documentation): the tables, the entries
//! the monitor writes, and each protected function's MSI.

use super::{Function, NoIommu, Unit, Units, MAX_FUNCTIONS, MAX_UNITS};
use quest_abi::PciAddress;
use quest_monitor_core::amdvi::intremap::{self, Irte};
use quest_monitor_core::amdvi::ivrs::Ivrs;
use quest_monitor_core::pci_msi::Remapped;

/// Interrupt remapping: each protected function's table (by its index among the
/// protected functions; 0: none, its MSI is refused) and the I/O APIC's.
#[derive(Debug)]
pub(super) struct Remapping {
    pub(super) tables: [u64; MAX_FUNCTIONS],
    pub(super) ioapic: IoApicTable,
}

/// The I/O APIC's device ID, the unit that sees its messages and its table.
#[derive(Clone, Copy, Debug)]
pub(super) struct IoApicTable {
    pub(super) unit: usize,
    pub(super) id: u16,
    pub(super) table: u64,
}

/// Writes entry `index` of the interrupt remapping table at `table` (the caller
/// invalidates it).
fn write_irte(table: u64, index: u16, irte: Irte) {
    let at = table + intremap::IRTE_SIZE * u64::from(index % intremap::IRT_ENTRIES as u16);
    // SAFETY: an entry of a table the monitor allocated (IRT_PAGES identity-mapped frames
    // of its pool), one aligned 32-bit store: the unit sees the old entry or the new one.
    unsafe { core::ptr::write_volatile(at as *mut u32, irte.encode()) };
}

impl Units {
    /// The message protected function `f` (at `functions[k]`) sends for an interrupt
    /// to physical APIC ID `apic_id` with `vector`: its table's MSI entries rewritten
    /// and invalidated, the message naming entry 0. Refused without remapping (its
    /// interrupts are blocked), for a function that shares its device ID with another
    /// (their tables are one), or an APIC ID above 255.
    pub(in crate::iommu) fn remap_msi(
        &self,
        functions: &[Option<Function>],
        f: PciAddress,
        apic_id: u32,
        vector: u8,
    ) -> Remapped {
        let Some(r) = &self.remapping else {
            return Remapped::Refused;
        };
        let found = crate::iommu::find_function(functions, f);
        let (Some((k, g)), Ok(apic_id)) = (found, u8::try_from(apic_id)) else {
            return Remapped::Refused;
        };
        let shared = functions
            .iter()
            .flatten()
            .filter(|h| h.unit == g.unit && h.requester == g.requester)
            .count()
            > 1;
        let (Some(&table), Some(Some(unit))) = (r.tables.get(k), self.units.get(g.unit)) else {
            return Remapped::Refused;
        };
        if table == 0 || shared {
            return Remapped::Refused;
        }
        let irte = Irte { vector, apic_id };
        for index in 0..intremap::MSI_ENTRIES {
            write_irte(table, index, irte);
        }
        match unit.run(core::iter::once(intremap::invalidate_interrupt_table(
            g.requester,
        ))) {
            Ok(()) => {
                let (address, data) = intremap::msi(0);
                Remapped::Message(address, data)
            }
            Err(_) => Remapped::Refused,
        }
    }
}

/// Interrupt remapping's tables when the IVRS names one I/O APIC behind a unit in use
/// (else `Ok(None)`: the protected functions' interrupts stay blocked): one table per
/// protected function (functions that share a device ID share its table) and the I/O
/// APIC's, whose entry `vector` sends each routed line's vector to its core. The I/O
/// APIC's redirection entries stay as `crate::interrupts` programmed them: fixed
/// delivery and vector `32 + line`, so their message data (vector, delivery mode in bits
/// 10:8 = 0) names exactly that entry. QEMU's I/O APIC sends through the IOMMU with the
/// IVRS's device ID (00:14.0), as hardware does with its own.
#[inline(never)]
pub(super) fn remapping_tables(
    ivrs: &Ivrs,
    units: &[Option<Unit>; MAX_UNITS],
    functions: &[Option<Function>; MAX_FUNCTIONS],
) -> Result<Option<Remapping>, NoIommu> {
    let Some((unit, id)) = ivrs.ioapic() else {
        return Ok(None);
    };
    if units.get(unit).is_none_or(|u| u.is_none()) {
        return Ok(None);
    }
    let table = || crate::frame_pool::alloc_zeroed(intremap::IRT_PAGES).ok_or(NoIommu::Frames);
    let mut tables = [0; MAX_FUNCTIONS];
    for k in 0..MAX_FUNCTIONS {
        let Some(f) = functions[k] else { continue };
        let earlier = functions[..k]
            .iter()
            .position(|g| g.is_some_and(|g| g.unit == f.unit && g.requester == f.requester));
        tables[k] = match earlier {
            Some(j) => tables[j],
            None => table()?,
        };
    }
    let ioapic = IoApicTable {
        unit,
        id,
        table: table()?,
    };
    crate::interrupts::each_route(|_, route| {
        if let Ok(apic_id) = u8::try_from(route.apic_id) {
            let irte = Irte {
                vector: route.vector(),
                apic_id,
            };
            write_irte(ioapic.table, u16::from(route.vector()), irte);
        }
    });
    crate::interrupts::level_lines_untagged();
    Ok(Some(Remapping { tables, ioapic }))
}
