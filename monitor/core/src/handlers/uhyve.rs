//! Hermit's uhyve hypercalls (`out dx, eax`: port = call, EAX = guest-physical address of
//! its packed parameter struct; decoded by `crate::uhyve`).
//!
//! - SerialBufferWrite and the single-byte Uart: kernel log bytes to the console.
//! - FileWrite to fd 1 or 2: std's stdout/stderr. The buffer is guest-virtual: it is
//!   translated page by page through the guest's own page tables (CR3), every table entry
//!   and every byte checked against the sandbox's RAM. Writes to other descriptors (there
//!   are none: opening a file always fails) are dropped.
//! - Exit: the sandbox ends with that status (the lifecycle stops its other vCPUs).
//! - Host file access and the obsolete calls: "failed" written into the struct's result
//!   field where it has one, and one console line saying so; the guest goes on.
//!
//! A parameter struct or buffer outside the sandbox's RAM is a fault: the guest passed an
//! address no correct kernel would.

use super::{console_from_guest, done};
use crate::guest_memory::{translate, GuestRam};
use crate::uhyve::{self, UhyveCall, Unsupported};
use crate::vcpu_ops::{Action, FaultKind, VcpuOps};
use quest_abi::GuestPhysAddr;

/// Longest parameter struct of a call Quest reads or writes.
const PARAMS_MAX: usize = 32;

/// Serves uhyve call `call` whose parameter struct is at guest-physical `params`.
pub fn handle(v: &mut impl VcpuOps, call: UhyveCall, params: u64) -> Action {
    let len = call.params_len().min(PARAMS_MAX);
    let mut raw = [0u8; PARAMS_MAX];
    if len > 0 && !v.read_guest(GuestPhysAddr::new(params), &mut raw[..len]) {
        return bad(
            params,
            "its parameter struct lies outside the sandbox's RAM",
        );
    }
    let raw = &raw[..len];
    let served = match call {
        UhyveCall::SerialBufferWrite => serial_buffer_write(v, raw),
        UhyveCall::FileWrite => file_write(v, raw),
        UhyveCall::SerialWriteByte => {
            v.console_bytes(&[params as u8]);
            Ok(())
        }
        UhyveCall::Exit => match uhyve::exit_code(raw) {
            Some(code) => return Action::Exit(code),
            None => Err("short Exit struct"),
        },
        UhyveCall::Unsupported(u) => unsupported(v, u, params),
    };
    match served {
        Ok(()) => done(v),
        Err(why) => bad(params, why),
    }
}

fn bad(params: u64, why: &'static str) -> Action {
    Action::fault_at(FaultKind::BadHypercall(why), params)
}

fn serial_buffer_write(v: &mut impl VcpuOps, raw: &[u8]) -> Result<(), &'static str> {
    let p = uhyve::serial_buffer(raw).ok_or("short SerialBufferWrite struct")?;
    if !console_from_guest(v, GuestPhysAddr::new(p.buf), p.len) {
        return Err("SerialBufferWrite buffer outside the sandbox's RAM");
    }
    Ok(())
}

/// The vCPU's RAM for the page-table walker.
struct Ram<'a, V>(&'a V);

impl<V: VcpuOps> GuestRam for Ram<'_, V> {
    fn ram_size(&self) -> u64 {
        self.0.ram_size()
    }
    fn read_u64(&self, gpa: u64) -> u64 {
        let mut b = [0u8; 8];
        if self.0.read_guest(GuestPhysAddr::new(gpa), &mut b) {
            u64::from_le_bytes(b)
        } else {
            0
        }
    }
}

fn file_write(v: &mut impl VcpuOps, raw: &[u8]) -> Result<(), &'static str> {
    let p = uhyve::file_write(raw).ok_or("short FileWrite struct")?;
    if !p.is_console() {
        return Ok(());
    }
    let cr3 = v.guest_cr3();
    let (mut linear, mut left) = (p.buf, p.len);
    while left > 0 {
        let (gpa, in_page) = translate(&Ram(&*v), cr3, linear)
            .map_err(|_| "FileWrite buffer is not mapped to RAM")?;
        let n = left.min(in_page);
        if !console_from_guest(v, GuestPhysAddr::new(gpa), n) {
            return Err("FileWrite buffer outside the sandbox's RAM");
        }
        left -= n;
        linear = linear
            .checked_add(n)
            .ok_or("FileWrite buffer wraps around")?;
    }
    Ok(())
}

fn unsupported(v: &mut impl VcpuOps, u: Unsupported, params: u64) -> Result<(), &'static str> {
    if let Some(result) = u.error_result() {
        // Inside the struct, which was read above, so inside RAM.
        let at = GuestPhysAddr::new(params).checked_add(result.offset);
        if !at.is_some_and(|at| v.write_guest(at, result.bytes)) {
            return Err("its parameter struct lies outside the sandbox's RAM");
        }
    }
    v.report(format_args!(
        "uhyve {} is not available in Quest (no host files); it failed",
        u.name()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeVcpu;
    use super::*;

    /// Writes `bytes` at `gpa` of the fake's RAM.
    fn put(v: &mut FakeVcpu, gpa: u64, bytes: &[u8]) {
        v.ram[gpa as usize..gpa as usize + bytes.len()].copy_from_slice(bytes);
    }

    fn call(v: &mut FakeVcpu, port: u16, params: u64) -> Action {
        handle(v, UhyveCall::from_port(port).expect("a uhyve port"), params)
    }

    fn bad_at(params: u64, why: &'static str) -> Action {
        Action::fault_at(FaultKind::BadHypercall(why), params)
    }

    const SERIAL: u16 = 0x880;
    const FILE_WRITE: u16 = 0x400;
    const EXIT: u16 = 0x540;
    const FILE_OPEN: u16 = 0x440;

    #[test]
    fn serial_buffer_write_prints_its_buffer() {
        let mut v = FakeVcpu::hermit();
        put(&mut v, 0x3000, b"kernel log\n");
        let mut params = [0u8; 16];
        params[..8].copy_from_slice(&0x3000u64.to_le_bytes());
        params[8..].copy_from_slice(&11u64.to_le_bytes());
        put(&mut v, 0x100, &params);
        assert_eq!(call(&mut v, SERIAL, 0x100), Action::Continue);
        assert_eq!(v.console, b"kernel log\n");
        assert_eq!(v.skipped, 1);
    }

    #[test]
    fn structs_and_buffers_outside_ram_are_faults() {
        let mut v = FakeVcpu::hermit();
        let ram = v.ram.len() as u64;
        // The struct itself outside RAM (and straddling its end).
        for params in [ram, ram - 8, 0xffff_fff0] {
            assert_eq!(
                call(&mut v, SERIAL, params),
                bad_at(
                    params,
                    "its parameter struct lies outside the sandbox's RAM"
                )
            );
        }
        // The buffer it names outside RAM.
        let mut params = [0u8; 16];
        params[..8].copy_from_slice(&(ram - 2).to_le_bytes());
        params[8..].copy_from_slice(&4u64.to_le_bytes());
        put(&mut v, 0x100, &params);
        assert_eq!(
            call(&mut v, SERIAL, 0x100),
            bad_at(0x100, "SerialBufferWrite buffer outside the sandbox's RAM")
        );
        // A length that wraps the address space.
        params[..8].copy_from_slice(&0x10u64.to_le_bytes());
        params[8..].copy_from_slice(&u64::MAX.to_le_bytes());
        put(&mut v, 0x100, &params);
        assert_eq!(
            call(&mut v, SERIAL, 0x100),
            bad_at(0x100, "SerialBufferWrite buffer outside the sandbox's RAM")
        );
        assert!(v.console.is_empty());
        assert_eq!(v.skipped, 0);
    }

    #[test]
    fn exit_ends_the_sandbox_with_its_status() {
        let mut v = FakeVcpu::hermit();
        put(&mut v, 0x200, &(-7i32).to_le_bytes());
        assert_eq!(call(&mut v, EXIT, 0x200), Action::Exit(-7));
        let ram = v.ram.len() as u64;
        assert_eq!(
            call(&mut v, EXIT, ram - 2),
            bad_at(
                ram - 2,
                "its parameter struct lies outside the sandbox's RAM"
            )
        );
    }

    #[test]
    fn uart_prints_eax_low_byte() {
        let mut v = FakeVcpu::hermit();
        assert_eq!(call(&mut v, 0x800, 0x0a), Action::Continue);
        assert_eq!(v.console, b"\n");
    }

    /// Identity page tables at 0x10000 (PML4), 0x11000 (PDPT), 0x12000 (PD), 0x13000
    /// (PT) mapping linear 0x40_0000.. 4 KiB pages onto guest-physical 0x20000.., two
    /// pages, with `extra` as a third (its entry as given).
    fn page_tables(v: &mut FakeVcpu, third: u64) -> u64 {
        const P: u64 = 0b11;
        put(v, 0x10000, &(0x11000 | P).to_le_bytes());
        put(v, 0x11000, &(0x12000 | P).to_le_bytes());
        // 0x40_0000 is PD slot 2.
        put(v, 0x12000 + 2 * 8, &(0x13000 | P).to_le_bytes());
        put(v, 0x13000, &(0x20000 | P).to_le_bytes());
        put(v, 0x13008, &(0x21000 | P).to_le_bytes());
        put(v, 0x13010, &third.to_le_bytes());
        0x10000
    }

    fn file_write_params(v: &mut FakeVcpu, fd: i32, buf: u64, len: u64) -> u64 {
        let mut p = [0u8; 20];
        p[..4].copy_from_slice(&fd.to_le_bytes());
        p[4..12].copy_from_slice(&buf.to_le_bytes());
        p[12..].copy_from_slice(&len.to_le_bytes());
        put(v, 0x180, &p);
        0x180
    }

    #[test]
    fn file_write_to_stdout_walks_the_guests_page_tables_across_pages() {
        let mut v = FakeVcpu::hermit();
        v.cr3 = page_tables(&mut v, 0);
        // 6 bytes ending the first page, 4 starting the second.
        put(&mut v, 0x20ffa, b"hello ");
        put(&mut v, 0x21000, b"std\n");
        let params = file_write_params(&mut v, 1, 0x40_0ffa, 10);
        assert_eq!(call(&mut v, FILE_WRITE, params), Action::Continue);
        assert_eq!(v.console, b"hello std\n");
        // Another descriptor: dropped, the guest goes on.
        let params = file_write_params(&mut v, 5, 0x40_0000, 4);
        assert_eq!(call(&mut v, FILE_WRITE, params), Action::Continue);
        assert_eq!(v.console.len(), 10);
        assert_eq!(v.skipped, 2);
    }

    #[test]
    fn file_write_through_unmapped_or_hostile_tables_is_a_fault() {
        let not_mapped = "FileWrite buffer is not mapped to RAM";
        let mut v = FakeVcpu::hermit();
        v.cr3 = page_tables(&mut v, 0);
        // Runs into the unmapped third page (the mapped part was printed already).
        let params = file_write_params(&mut v, 2, 0x40_1ff0, 0x20);
        assert_eq!(call(&mut v, FILE_WRITE, params), bad_at(params, not_mapped));
        assert_eq!(v.console.len(), 0x10);
        v.console.clear();
        // A page-table entry pointing outside RAM, as table and as page.
        let ram = v.ram.len() as u64;
        v.cr3 = page_tables(&mut v, ram | 0b11);
        let params = file_write_params(&mut v, 2, 0x40_2000, 1);
        assert_eq!(call(&mut v, FILE_WRITE, params), bad_at(params, not_mapped));
        v.cr3 = ram;
        assert_eq!(call(&mut v, FILE_WRITE, params), bad_at(params, not_mapped));
        // A non-canonical buffer.
        v.cr3 = page_tables(&mut v, 0);
        let params = file_write_params(&mut v, 1, 0x8000_0000_0000, 1);
        assert_eq!(call(&mut v, FILE_WRITE, params), bad_at(params, not_mapped));
        assert!(v.console.is_empty());
    }

    #[test]
    fn host_file_calls_fail_in_their_struct_and_say_so() {
        let mut v = FakeVcpu::hermit();
        put(&mut v, 0x300, &[0xaa; 20]);
        assert_eq!(call(&mut v, FILE_OPEN, 0x300), Action::Continue);
        assert_eq!(&v.ram[0x310..0x314], &(-1i32).to_le_bytes(), "ret = -1");
        assert_eq!(&v.ram[0x300..0x310], &[0xaa; 16], "the rest untouched");
        assert_eq!(
            v.reports,
            ["uhyve FileOpen is not available in Quest (no host files); it failed"]
        );
        assert_eq!(v.skipped, 1);
        // Its struct outside RAM: a fault, nothing written.
        let ram = v.ram.len() as u64;
        assert_eq!(
            call(&mut v, FILE_OPEN, ram - 4),
            bad_at(
                ram - 4,
                "its parameter struct lies outside the sandbox's RAM"
            )
        );
        assert_eq!(v.reports.len(), 1);
    }
}
