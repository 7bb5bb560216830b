//! Booting an ISO in Bochs, which emulates VT-x with EPT (see `bochsrc` for the configuration).

use super::Machine;
use std::ffi::OsString;
use std::path::Path;

/// The Bochs CPU model: VMX with EPT, unrestricted guest, x2APIC (all the monitor
/// needs), and the SHA extensions, which the monitor uses to check the payloads' SHA-256
/// at boot (`monitor/src/arch/sha256.rs`; without them it hashes in software, about 20
/// times the instructions, and Bochs' TSC counts instructions). `corei7_skylake_x`, the
/// model used before, has everything but SHA.
pub const CPU_MODEL: &str = "corei7_icelake_u";
/// The Bochs CPU model of `--cpu amd`: `ryzen` (an AMD Ryzen 7 1700, first-generation
/// Zen), the Bochs 2.7 model with AMD SVM and nested paging (and no VT-x). Images boot on
/// it to test the monitor's SVM backend; until that exists, the monitor refuses there.
/// Like the real Zen 1 it appears to have no x2APIC (Bochs 2.7's model answers no
/// CPUID leaf 0xB), which an SVM backend must allow for.
pub const AMD_CPU_MODEL: &str = "ryzen";

/// Which processor Bochs emulates (`quest-build run --cpu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BochsCpu {
    /// Intel with VT-x and EPT ([`CPU_MODEL`]): the platform the monitor is tested on.
    #[default]
    Intel,
    /// AMD with SVM and nested paging ([`AMD_CPU_MODEL`]).
    Amd,
}

impl BochsCpu {
    /// The Bochs `cpu: model=` value.
    pub fn model(self) -> &'static str {
        match self {
            Self::Intel => CPU_MODEL,
            Self::Amd => AMD_CPU_MODEL,
        }
    }
}

/// Instructions per emulated second per CPU (2M-10M keeps several emulated CPUs responsive; 10M boots BIOS+GRUB in about 1 s).
pub const IPS: u64 = 10_000_000;

/// A headless Bochs configuration booting `iso` on `cores` CPUs of model `cpu` with
/// `memory_mib` MiB, COM1 written to `serial_log`, Bochs' log to `bochs_log`.
///
/// It needs nothing from the host beyond the Debian packages (`bochs`, `bochsbios`,
/// `vgabios`): every Bochs 2.7 default that reaches for host hardware was checked and is
/// either turned off or pointed at a file or a dummy driver. Each line says why it is
/// there. The device plugins Bochs loads unasked (see `plugin_ctrl` in Bochs' sample
/// bochsrc) are biosdev, extfpuirq, gameport, iodebug, parallel, serial, speaker and
/// unmapped; the i440FX chipset adds its own (PCI, IDE, USB UHCI with no ports, ACPI,
/// HPET, CMOS, DMA, PIC, PIT, VGA, floppy, IOAPIC, keyboard), none of which opens a host
/// device as configured here. Network cards, sound cards (SB16, ES1370), USB host
/// devices and PCI passthrough are only loaded when configured, and are not.
pub fn bochsrc(
    iso: &Path,
    cpu: BochsCpu,
    machine: Machine,
    serial_log: &Path,
    bochs_log: &Path,
) -> String {
    let Machine {
        cores, memory_mib, ..
    } = machine;
    let model = cpu.model();
    format!(
        "\
# Written by quest-build run; every line is explained in quest-build/src/run/bochs.rs.
config_interface: textconfig
display_library: rfb, options=\"timeout=0\"
romimage: file=/usr/share/bochs/BIOS-bochs-latest
vgaromimage: file=/usr/share/vgabios/vgabios.bin
memory: guest={memory_mib}, host={memory_mib}
cpu: model={model}, count={cores}, ips={IPS}, reset_on_triple_fault=0, ignore_bad_msrs=1
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
{HOST_NEUTRAL}",
        iso = iso.display(),
        serial = serial_log.display(),
        log = bochs_log.display(),
    )
}

/// Writes `bochsrc` (see [`bochsrc`]; Bochs' own log goes to `bochs.log`) and the
/// debugger's command file into `dir`, and returns the command line that runs Bochs with
/// them (to be run in its own network namespace: the VNC display listens). The CPU is
/// the Intel one; [`prepare_cpu`] chooses.
pub fn prepare(
    dir: &Path,
    iso: &Path,
    machine: Machine,
    serial_log: &Path,
) -> std::io::Result<Vec<OsString>> {
    prepare_cpu(dir, iso, BochsCpu::Intel, machine, serial_log)
}

/// [`prepare`] with the CPU model `cpu`.
pub fn prepare_cpu(
    dir: &Path,
    iso: &Path,
    cpu: BochsCpu,
    machine: Machine,
    serial_log: &Path,
) -> std::io::Result<Vec<OsString>> {
    let rc = dir.join("bochsrc");
    let text = bochsrc(iso, cpu, machine, serial_log, &dir.join("bochs.log"));
    std::fs::write(&rc, text)?;
    // The debugger's command file: continue, and quit at any later prompt (stdin is
    // empty), so Bochs never waits for a person.
    let cmds = dir.join("cmds");
    std::fs::write(&cmds, "c\n")?;
    Ok(vec![
        "bochs-bin".into(),
        "-q".into(),
        "-f".into(),
        rc.into(),
        "-rc".into(),
        cmds.into(),
    ])
}

/// The lines that keep Bochs away from the host's hardware (see [`bochsrc`]).
///
/// - `sound`: the lowlevel sound drivers default to ALSA; on a host without a sound
///   card (any fresh server or CI machine) Bochs 2.7 prints ALSA errors and aborts with
///   `*** buffer overflow detected ***` before the BIOS runs. The dummy drivers play
///   nothing and need nothing. (`speaker: enabled=0` alone does not avoid it.)
/// - `speaker`: the PC speaker stays (firmware and boot loaders may beep) in `sound`
///   mode, which goes to the dummy driver above; its `system` mode would write to the
///   host's `/dev/console`.
/// - `plugin_ctrl`: the game port polls the host's joystick (`/dev/input/js0`) and the
///   parallel port can write to a host file or printer; no sandbox uses either, so
///   neither plugin is loaded.
pub const HOST_NEUTRAL: &str = "\
sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy
speaker: enabled=1, mode=sound
plugin_ctrl: gameport=0, parallel=0
";

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_cpu(cpu: BochsCpu) -> String {
        let machine = Machine {
            cores: 3,
            memory_mib: 512,
            qemu_devices: Default::default(),
            com2: false,
            nics: Default::default(),
        };
        bochsrc(
            Path::new("/i/hello.iso"),
            cpu,
            machine,
            Path::new("/r/serial.log"),
            Path::new("/r/bochs.log"),
        )
    }

    fn sample() -> String {
        sample_cpu(BochsCpu::Intel)
    }

    #[test]
    fn the_amd_cpu_is_the_ryzen_model_and_nothing_else_changes() {
        let (intel, amd) = (sample(), sample_cpu(BochsCpu::Amd));
        assert!(
            amd.contains("cpu: model=ryzen, count=3, ips=10000000"),
            "{amd}"
        );
        assert_eq!(
            amd.replace("model=ryzen", "model=corei7_icelake_u"),
            intel,
            "only the model differs"
        );
        assert_eq!(BochsCpu::default(), BochsCpu::Intel);
    }

    #[test]
    fn the_configuration_names_the_iso_cores_memory_and_logs() {
        let rc = sample();
        assert!(rc.contains("ata0-master: type=cdrom, path=/i/hello.iso, status=inserted"));
        assert!(rc.contains("cpu: model=corei7_icelake_u, count=3, ips=10000000"));
        assert!(rc.contains("memory: guest=512, host=512"));
        assert!(rc.contains("com1: enabled=1, mode=file, dev=/r/serial.log"));
        assert!(rc.contains("log: /r/bochs.log"));
        assert!(rc.contains("panic: action=fatal"));
    }

    /// The key and options of every `key: options` line.
    fn settings(rc: &str) -> Vec<(&str, &str)> {
        rc.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(": "))
            .collect()
    }

    #[test]
    fn nothing_reaches_for_host_hardware() {
        let rc = sample();
        let set = settings(&rc);
        let get = |key: &str| {
            set.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| panic!("no `{key}:` line in\n{rc}"))
        };
        // Every lowlevel sound driver is the dummy one (ALSA aborts Bochs without a card).
        for driver in ["waveoutdrv", "waveindrv", "midioutdrv"] {
            assert!(
                get("sound").contains(&format!("{driver}=dummy")),
                "{driver} is not dummy in {rc}"
            );
        }
        assert!(get("speaker").contains("mode=sound"), "{rc}");
        assert!(get("plugin_ctrl").contains("gameport=0"), "{rc}");
        assert!(get("plugin_ctrl").contains("parallel=0"), "{rc}");
        assert_eq!(get("mouse"), "enabled=0");
        assert!(get("com1").contains("mode=file"), "{rc}");
        assert!(get("clock").contains("sync=none"), "{rc}");
        // No key appears twice (Bochs would take the last one silently).
        let mut keys: Vec<&str> = set.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        let before = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), before, "a key is repeated in {rc}");
    }
}
