//! I/O instruction exits. The sandbox's own device ports pass through the I/O bitmap and
//! never exit; what exits is either a uhyve hypercall port (Hermit's convention: `out dx,
//! eax` with EAX = guest-physical address of a packed parameter block; served in
//! [`super::uhyve`]), the 8259 PIC accesses Hermit makes once (writes ignored, reads
//! "all masked"; the monitor masked the real PICs at boot), or a forbidden port, which
//! stops the sandbox. String instructions (`ins`/`outs`) always stop it. The PCI
//! configuration ports (mechanism #1: address 0xCF8, data 0xCFC-0xCFF) are the monitor's
//! and never pass through: [`pci_config`] serves them from the sandbox's virtual
//! configuration space.

use super::done;
use crate::exit::IoQualification;
use crate::uhyve::UhyveCall;
use crate::vcpu_ops::{gpr, Action, FaultKind, VcpuOps};
use quest_abi::Runtime;

/// The 8259 PIC command/data ports of both controllers.
const PIC_PORTS: [u16; 4] = [0x20, 0x21, 0xA0, 0xA1];

pub fn handle(v: &mut impl VcpuOps, q: IoQualification) -> Action {
    let forbidden = Action::fault_at(
        FaultKind::ForbiddenPort {
            port: q.port,
            input: q.input,
        },
        u64::from(q.port),
    );
    if q.string {
        return forbidden;
    }
    if (CONFIG_ADDRESS..=CONFIG_DATA + 3).contains(&q.port) {
        return pci_config(v, q);
    }
    let pic = v.runtime() == Runtime::Hermit && PIC_PORTS.contains(&q.port);
    match (q.port, q.input) {
        (port, false) => match UhyveCall::from_port(port) {
            // EAX holds the parameter struct's guest-physical address (below 4 GiB).
            Some(call) => {
                let params = v.regs()[gpr::RAX] & 0xffff_ffff;
                super::uhyve::handle(v, call, params)
            }
            None if pic => done(v),
            None => forbidden,
        },
        (_, true) if pic => {
            // Reads as "all interrupts masked".
            let mask = (1u64 << (u32::from(q.size) * 8)) - 1;
            let rax = &mut v.regs_mut()[gpr::RAX];
            *rax = (*rax & !mask) | (0xff & mask);
            done(v)
        }
        _ => forbidden,
    }
}

/// Mechanism #1's address register (32-bit accesses only).
const CONFIG_ADDRESS: u16 = 0xcf8;
/// Mechanism #1's data window, 0xCFC-0xCFF.
const CONFIG_DATA: u16 = 0xcfc;
/// The address register's enable bit.
const CONFIG_ENABLE: u32 = 1 << 31;
/// What the address register keeps: enable, bus, device, function, dword offset. Its
/// reserved bits (30:24, 1:0) read back as zero and never reach an offset.
const CONFIG_ADDRESS_BITS: u32 = CONFIG_ENABLE | 0x00ff_fffc;

/// An access to 0xCF8-0xCFF. A dword at 0xCF8 reads or latches this vCPU's address;
/// narrower accesses to 0xCF8-0xCFB (0xCF9 is the chipset's reset register) read all ones
/// and are dropped. The data window reaches the latched function's register at its
/// offset plus the port's lane, when the enable bit is set and the access stays in the
/// dword; otherwise reads are all ones and writes dropped.
fn pci_config(v: &mut impl VcpuOps, q: IoQualification) -> Action {
    let size = q.size;
    let ones = (1u64 << (u32::from(size) * 8)) - 1;
    let eax = v.regs()[gpr::RAX] as u32;
    let read = match q.port {
        CONFIG_ADDRESS if size == 4 => {
            if q.input {
                Some(*v.pci_latch())
            } else {
                *v.pci_latch() = eax & CONFIG_ADDRESS_BITS;
                None
            }
        }
        port if port >= CONFIG_DATA => {
            let latch = *v.pci_latch();
            let lane = (port - CONFIG_DATA) as u8;
            let offset = (latch & 0xfc) as u8 + lane;
            let function = quest_abi::PciAddress::from_u16((latch >> 8) as u16);
            let reachable = latch & CONFIG_ENABLE != 0 && lane + size <= 4;
            match (q.input, reachable) {
                (true, true) => Some(v.pci_read(function, offset, size)),
                (false, true) => {
                    v.pci_write(function, offset, size, eax);
                    None
                }
                (true, false) => Some(u32::MAX),
                (false, false) => None,
            }
        }
        _ => q.input.then_some(u32::MAX),
    };
    if let Some(value) = read {
        let rax = &mut v.regs_mut()[gpr::RAX];
        *rax = (*rax & !ones) | (u64::from(value) & ones);
    }
    done(v)
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeVcpu;
    use super::super::{handle as dispatch, Exit};
    use super::*;

    fn io(port: u16, input: bool, size: u8) -> Exit {
        Exit::Io(IoQualification {
            size,
            input,
            string: false,
            rep: false,
            port,
        })
    }

    fn forbidden(port: u16, input: bool) -> Action {
        Action::fault_at(FaultKind::ForbiddenPort { port, input }, u64::from(port))
    }

    #[test]
    fn hermit_pic_writes_are_ignored_and_reads_all_masked() {
        let mut v = FakeVcpu::hermit();
        v.regs[gpr::RAX] = 0x1234_5678;
        assert_eq!(dispatch(&mut v, io(0x21, false, 1)), Action::Continue);
        assert_eq!(v.regs[gpr::RAX], 0x1234_5678);
        assert_eq!(dispatch(&mut v, io(0xA1, true, 1)), Action::Continue);
        assert_eq!(v.regs[gpr::RAX], 0x1234_56ff, "only AL changes");
        v.regs[gpr::RAX] = u64::MAX << 8;
        assert_eq!(dispatch(&mut v, io(0x20, true, 2)), Action::Continue);
        assert_eq!(v.regs[gpr::RAX], (u64::MAX << 16) | 0xff, "AX = 0x00ff");
        assert_eq!(v.skipped, 3);
    }

    #[test]
    fn the_pic_is_forbidden_to_a_bare_sandbox() {
        let mut v = FakeVcpu::new();
        assert_eq!(dispatch(&mut v, io(0x21, false, 1)), forbidden(0x21, false));
        assert_eq!(dispatch(&mut v, io(0x20, true, 1)), forbidden(0x20, true));
        assert_eq!(v.skipped, 0);
    }

    #[test]
    fn other_ports_strings_and_uhyve_reads_are_forbidden() {
        let mut v = FakeVcpu::hermit();
        // A port of no device (a real COM1 the sandbox was not given), both directions.
        assert_eq!(
            dispatch(&mut v, io(0x3f8, false, 1)),
            forbidden(0x3f8, false)
        );
        assert_eq!(dispatch(&mut v, io(0x3f8, true, 1)), forbidden(0x3f8, true));
        // A uhyve port read: uhyve calls are writes.
        assert_eq!(dispatch(&mut v, io(0x880, true, 4)), forbidden(0x880, true));
        // `rep outsb` to a uhyve port and `insb` from the PIC.
        for (port, input) in [(0x880, false), (0x21, true)] {
            let q = IoQualification {
                size: 1,
                input,
                string: true,
                rep: true,
                port,
            };
            assert_eq!(dispatch(&mut v, Exit::Io(q)), forbidden(port, input));
        }
        assert_eq!((v.skipped, v.console.len()), (0, 0));
    }

    #[test]
    fn a_uhyve_port_reaches_the_uhyve_handler_with_eax_only() {
        let mut v = FakeVcpu::hermit();
        // Uart: the byte is EAX's low byte; the upper half of RAX is ignored.
        v.regs[gpr::RAX] = 0xffff_ffff_0000_0041;
        assert_eq!(dispatch(&mut v, io(0x800, false, 4)), Action::Continue);
        assert_eq!(v.console, b"A");
    }

    #[test]
    fn the_address_register_is_the_vcpus_own_and_drops_reserved_bits() {
        let mut v = FakeVcpu::new();
        v.regs[gpr::RAX] = 0xffff_ffff_ffff_ffff;
        assert_eq!(dispatch(&mut v, io(0xcf8, false, 4)), Action::Continue);
        assert_eq!(
            v.pci_latch, 0x80ff_fffc,
            "reserved bits 30:24 and 1:0 dropped"
        );
        v.regs[gpr::RAX] = 0;
        assert_eq!(dispatch(&mut v, io(0xcf8, true, 4)), Action::Continue);
        assert_eq!(v.regs[gpr::RAX], 0x80ff_fffc);
        // Narrow accesses to 0xCF8-0xCFB (0xCF9: reset control) do nothing.
        v.regs[gpr::RAX] = 0x06;
        for port in [0xcf8, 0xcf9, 0xcfa, 0xcfb] {
            assert_eq!(dispatch(&mut v, io(port, false, 1)), Action::Continue);
            assert_eq!(dispatch(&mut v, io(port, true, 1)), Action::Continue);
            assert_eq!(v.regs[gpr::RAX] & 0xff, 0xff);
        }
        assert_eq!(v.pci_latch, 0x80ff_fffc);
        assert!(v.pci.is_empty());
        assert_eq!(v.skipped, 10);
    }

    #[test]
    fn the_data_window_reaches_the_latched_register_by_lane() {
        let mut v = FakeVcpu::new();
        let f = quest_abi::PciAddress::new(0, 3, 0).unwrap();
        v.pci_latch = 0x8000_1804; // 00:03.0, offset 4
        v.regs[gpr::RAX] = 0xdead_0000_0000_0000;
        assert_eq!(dispatch(&mut v, io(0xcfc, true, 4)), Action::Continue);
        assert_eq!(v.regs[gpr::RAX], 0xdead_0000_1234_5678, "EAX only");
        dispatch(&mut v, io(0xcfe, true, 2));
        assert_eq!(v.regs[gpr::RAX] & 0xffff, 0x5678);
        v.regs[gpr::RAX] = 0x0007;
        dispatch(&mut v, io(0xcfc, false, 2));
        dispatch(&mut v, io(0xcff, false, 1));
        assert_eq!(
            v.pci,
            [
                (f, 4, 4, None),
                (f, 6, 2, None),
                (f, 4, 2, Some(7)),
                (f, 7, 1, Some(7))
            ]
        );
    }

    #[test]
    fn disabled_or_crossing_accesses_read_ones_and_write_nothing() {
        let mut v = FakeVcpu::new();
        v.pci_latch = 0x0000_1800; // enable bit clear
        v.regs[gpr::RAX] = 0;
        dispatch(&mut v, io(0xcfc, true, 4));
        assert_eq!(v.regs[gpr::RAX], 0xffff_ffff);
        dispatch(&mut v, io(0xcfc, false, 4));
        v.pci_latch = 0x8000_1800;
        v.regs[gpr::RAX] = 0;
        dispatch(&mut v, io(0xcfe, true, 4)); // two bytes past the dword
        assert_eq!(v.regs[gpr::RAX], 0xffff_ffff);
        dispatch(&mut v, io(0xcfd, false, 4));
        assert!(v.pci.is_empty());
        // String instructions still stop the sandbox.
        let q = IoQualification {
            size: 4,
            input: true,
            string: true,
            rep: false,
            port: 0xcfc,
        };
        assert_eq!(dispatch(&mut v, Exit::Io(q)), forbidden(0xcfc, true));
    }
}
