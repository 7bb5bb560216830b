//! The flattened device tree a Hermit sandbox boots with (Hermit 0.11 requires one):
//! the platform (`compatible = "hermit,uhyve"`), its RAM, the command line and,
//! optionally, the TSC frequency.

use vm_fdt::FdtWriter;

/// What the device tree describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdtParams<'a> {
    /// Guest RAM is `[0, ram_size)`.
    pub ram_size: u64,
    /// `/chosen/bootargs` (see [`super::bootargs`]).
    pub bootargs: &'a str,
    /// `/hermit,tsc/khz`, if known at build time. Hermit prefers it over every other
    /// source; the monitor patches the TSC frequency into the boot info instead (FDT cells
    /// are big-endian, the table's patch is a little-endian u32).
    pub tsc_khz: Option<u32>,
}

/// The device tree blob.
pub fn device_tree(p: &FdtParams<'_>) -> Result<Vec<u8>, vm_fdt::Error> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", "hermit,uhyve")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;

    let memory = fdt.begin_node("memory@0")?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &[0, p.ram_size])?;
    fdt.end_node(memory)?;

    let chosen = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", p.bootargs)?;
    fdt.end_node(chosen)?;

    if let Some(khz) = p.tsc_khz {
        let tsc = fdt.begin_node("hermit,tsc")?;
        fdt.property_u32("khz", khz)?;
        fdt.end_node(tsc)?;
    }

    fdt.end_node(root)?;
    fdt.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(blob: &[u8]) -> fdt::Fdt<'_> {
        fdt::Fdt::new(blob).expect("a valid device tree")
    }

    #[test]
    fn hermit_finds_platform_memory_and_bootargs() {
        let blob = device_tree(&FdtParams {
            ram_size: 64 << 20,
            bootargs: "env=A=1 -- 'x y'",
            tsc_khz: None,
        })
        .unwrap();
        // Read back with the parser Hermit 0.11 itself uses.
        let t = parsed(&blob);
        assert_eq!(t.root().compatible().first(), "hermit,uhyve");
        let mem: Vec<_> = t
            .find_all_nodes("/memory")
            .map(|m| m.reg().unwrap().next().unwrap())
            .collect();
        assert_eq!(mem.len(), 1);
        assert_eq!(mem[0].starting_address as u64, 0);
        assert_eq!(mem[0].size, Some(64 << 20));
        assert_eq!(t.chosen().bootargs(), Some("env=A=1 -- 'x y'"));
        assert!(t.find_node("/hermit,tsc").is_none());
    }

    #[test]
    fn tsc_node_is_there_when_known() {
        let blob = device_tree(&FdtParams {
            ram_size: 6 << 30,
            bootargs: "--",
            tsc_khz: Some(2_400_000),
        })
        .unwrap();
        let t = parsed(&blob);
        let khz = t
            .find_node("/hermit,tsc")
            .and_then(|n| n.property("khz"))
            .and_then(|p| p.as_usize());
        assert_eq!(khz, Some(2_400_000));
        // Above 4 GiB: both cells of the size are used.
        let reg = t
            .find_node("/memory@0")
            .unwrap()
            .reg()
            .unwrap()
            .next()
            .unwrap();
        assert_eq!(reg.size, Some(6 << 30));
    }

    #[test]
    fn a_long_command_line_still_fits_before_the_boot_info() {
        let long = "x".repeat(10_000);
        let blob = device_tree(&FdtParams {
            ram_size: 4 << 20,
            bootargs: &long,
            tsc_khz: None,
        })
        .unwrap();
        // The caller checks this against FDT_MAX_SIZE; the blob itself stays valid.
        assert!(blob.len() > 10_000);
        assert_eq!(parsed(&blob).chosen().bootargs(), Some(long.as_str()));
    }
}
