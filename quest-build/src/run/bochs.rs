//! Booting an ISO in Bochs, which emulates VT-x with EPT (see PLATFORM.md).

use std::path::Path;

/// The Bochs CPU model: VMX with EPT, unrestricted guest, x2APIC.
pub const CPU_MODEL: &str = "corei7_skylake_x";
/// Instructions per emulated second per CPU (PLATFORM.md: 2M-10M with several CPUs).
pub const IPS: u64 = 10_000_000;

/// A headless Bochs configuration booting `iso` on `cores` CPUs with `memory_mib` MiB,
/// COM1 written to `serial_log`, Bochs' log to `bochs_log`.
pub fn bochsrc(
    iso: &Path,
    cores: u32,
    memory_mib: u64,
    serial_log: &Path,
    bochs_log: &Path,
) -> String {
    format!(
        "\
config_interface: textconfig
display_library: rfb, options=\"timeout=0\"
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
memory: guest={memory_mib}, host={memory_mib}
cpu: model={CPU_MODEL}, count={cores}, ips={IPS}, reset_on_triple_fault=0, ignore_bad_msrs=1
clock: sync=none, time0=local
ata0: enabled=1, ioaddr1=0x1f0, ioaddr2=0x3f0, irq=14
ata0-master: type=cdrom, path={iso}, status=inserted
boot: cdrom
floppy_bootsig_check: disabled=1
com1: enabled=1, mode=file, dev={serial}
log: {log}
panic: action=fatal
error: action=report
info: action=report
debug: action=ignore
debugger_log: /dev/null
mouse: enabled=0
port_e9_hack: enabled=1
",
        iso = iso.display(),
        serial = serial_log.display(),
        log = bochs_log.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_names_the_iso_cores_memory_and_logs() {
        let rc = bochsrc(
            Path::new("/i/hello.iso"),
            3,
            512,
            Path::new("/r/serial.log"),
            Path::new("/r/bochs.log"),
        );
        assert!(rc.contains("ata0-master: type=cdrom, path=/i/hello.iso, status=inserted"));
        assert!(rc.contains("cpu: model=corei7_skylake_x, count=3, ips=10000000"));
        assert!(rc.contains("memory: guest=512, host=512"));
        assert!(rc.contains("com1: enabled=1, mode=file, dev=/r/serial.log"));
        assert!(rc.contains("log: /r/bochs.log"));
        assert!(rc.contains("panic: action=fatal"));
    }
}
