//! What the host offers: VT-x for guests (KVM), Bochs, QEMU, network isolation.

use crate::image::iso::find_program;
use std::path::Path;
use std::process::{Command, Stdio};

/// Whether `/proc/cpuinfo` text lists VT-x (`vmx`) or AMD SVM (`svm`) among the flags.
pub fn cpuinfo_has_hw_virt(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// Whether this host can run a guest hypervisor at full speed: `/dev/kvm` is usable and
/// the CPU has VT-x or SVM, either of which the monitor uses (a paravirtual `/dev/kvm`
/// without them is far too slow).
pub fn kvm_usable() -> bool {
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    kvm && std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| cpuinfo_has_hw_virt(&c))
}

/// Files Bochs needs: its binary, BIOS and VGA BIOS, with the package that has each.
pub const BOCHS_FILES: [(&str, &str); 3] = [
    ("bochs-bin", "bochs"),
    ("/usr/share/bochs/BIOS-bochs-latest", "bochsbios"),
    ("/usr/share/vgabios/vgabios.bin", "vgabios"),
];

/// `None` if Bochs can run here, else the one line saying what to install.
pub fn bochs_missing() -> Option<String> {
    let missing: Vec<&str> = BOCHS_FILES
        .iter()
        .filter(|(file, _)| {
            if file.starts_with('/') {
                !Path::new(file).is_file()
            } else {
                find_program(file).is_none()
            }
        })
        .map(|(_, package)| *package)
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "Bochs is not installed: apt install bochs bochsbios vgabios (missing: {})",
            missing.join(", ")
        )
    })
}

/// `None` if QEMU can run here, else what to install.
pub fn qemu_missing() -> Option<String> {
    find_program("qemu-system-x86_64")
        .is_none()
        .then(|| "QEMU is not installed: apt install qemu-system-x86".to_owned())
}

/// The command prefix that runs a program in its own, empty network namespace (Bochs'
/// VNC display must not listen on the machine), or `None` if this host cannot.
pub fn network_isolation() -> Option<Vec<&'static str>> {
    let candidates: [&[&'static str]; 2] = [
        &["unshare", "--net"],
        &["unshare", "--user", "--map-root-user", "--net"],
    ];
    candidates.into_iter().find_map(|prefix| {
        let ok = Command::new(prefix[0])
            .args(&prefix[1..])
            .arg("true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| prefix.to_vec())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vmx_and_svm_flags_are_found_as_whole_words() {
        assert!(cpuinfo_has_hw_virt(
            "processor : 0\nflags\t\t: fpu vme vmx sse\n"
        ));
        assert!(cpuinfo_has_hw_virt("flags\t\t: fpu vmxfoo svm\n"));
        assert!(!cpuinfo_has_hw_virt("flags\t\t: fpu vmxfoo svmbar\n"));
        assert!(!cpuinfo_has_hw_virt("model name : vmx svm\n"));
    }
}
