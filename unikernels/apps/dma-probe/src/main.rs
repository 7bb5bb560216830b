//! Drives QEMU's `edu` test device (1234:11e8) as a driver would, to show the IOMMU at
//! work (`partition-manifests/dma.toml`):
//! 1. finds edu on the bus (configuration mechanism #1; the monitor shows the sandbox its
//!    own functions only), turns memory decode and bus mastering on (the monitor allows
//!    it for a function behind an active IOMMU domain) and checks edu's ID and liveness
//!    registers through its BAR 0 (mapped by the monitor where firmware put it);
//! 2. DMAs 2 KiB of a pattern from its RAM into edu's buffer and back into another page
//!    of its RAM and compares: DMA inside its own memory works, translated by its domain;
//! 3. DMAs edu's buffer to the guest-physical page right above its RAM, which its domain
//!    does not map: the IOMMU refuses the write and the monitor stops this sandbox. Should
//!    it come back from that, it says `NOT CONTAINED` and exits 3.
//!
//! edu (QEMU `docs/specs/edu.rst`, `hw/misc/edu.c`): BAR 0 registers 0x00 ID
//! (0x010000ed), 0x04 liveness (reads back the inverse of what was written), 0x80 DMA
//! source, 0x88 destination, 0x90 count, 0x98 command (bit 0 start, cleared when done;
//! bit 1 direction: 0 = RAM to edu, 1 = edu to RAM); its buffer is at device address
//! 0x40000, 4 KiB; a DMA runs 100 ms (QEMU's virtual clock) after the start.
//!
//! With the argument `attack` (`dma-intr.toml`), between steps 2 and 3 it also makes edu
//! DMA 4 bytes into the interrupt range: data 0x40 to 0xFEE01010, which without interrupt
//! remapping is an MSI (vector 0x40, fixed, to APIC ID 1: the bystander's core; bit 4 is
//! ignored in compatibility format), one the monitor never set up. With VT-d interrupt
//! remapping it is a remappable-format message naming remapping table entry 128, which
//! the monitor never fills: the unit refuses it. `attack-compat` sends 0xFEE01000 (bit 4
//! clear), the plain compatibility-format message, which remapping blocks too (GCMD.CFI
//! clear) on hardware; QEMU 7.2 delivers it (see `dma-intr.toml`).
//!
//! With the argument `bystander` it is the other sandbox instead: it takes every vector
//! 32-255, prints a tick every 100 ms for 3 s and exits 0 if no interrupt arrived, to show
//! that the rest of the system goes on (and gets no interrupt from the probe's device);
//! an interrupt makes it say `NOT CONTAINED`. With `idle` it exits 0 at once
//! (`dma-late.toml`: a device owner that ends before another's fault).
#![no_std]
#![no_main]

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, Ordering};
use quest_rt::console::not_contained;
use quest_rt::pci::{self, PciId, COMMAND, COMMAND_BUS_MASTER, COMMAND_MEMORY};
use quest_rt::time::{delay_micros, Instant};
use quest_rt::{println, Ctx};

quest_rt::entry!(main);

/// edu's vendor:device.
const EDU: PciId = PciId {
    vendor: 0x1234,
    device: 0x11e8,
};
/// edu register offsets in BAR 0.
const ID: usize = 0x00;
const LIVENESS: usize = 0x04;
const DMA_SOURCE: usize = 0x80;
const DMA_DESTINATION: usize = 0x88;
const DMA_COUNT: usize = 0x90;
const DMA_COMMAND: usize = 0x98;
/// DMA command bits.
const DMA_START: u64 = 1;
const DMA_TO_RAM: u64 = 1 << 1;
/// edu's buffer, in its own address space.
const EDU_BUFFER: u64 = 0x4_0000;
/// Bytes of a page.
const PAGE: usize = 4096;
/// Bytes each DMA moves: half of edu's buffer (QEMU 7.2's edu stops the whole emulator,
/// "hardware error: DMA range out of bounds", for a transfer that ends at its buffer's
/// end: it compares that end with `<`).
const LEN: usize = 2048;
/// How long a DMA may take (edu starts it 100 ms after the command).
const DMA_TIMEOUT_US: u64 = 2_000_000;

/// One page of RAM, page aligned.
#[repr(C, align(4096))]
struct Page(UnsafeCell<[u8; PAGE]>);
// SAFETY: only vCPU 0 touches the pages (and edu, by DMA while vCPU 0 waits for it).
unsafe impl Sync for Page {}

static SOURCE: Page = Page(UnsafeCell::new([0; PAGE]));
static DESTINATION: Page = Page(UnsafeCell::new([0; PAGE]));

impl Page {
    /// Its guest-physical address (the boot page tables are an identity map).
    fn gpa(&self) -> u64 {
        self.0.get() as u64
    }
}

/// edu's registers.
struct Edu(*mut u8);

impl Edu {
    fn read32(&self, reg: usize) -> u32 {
        // SAFETY: a register of edu's BAR 0 (1 MiB), mapped uncached by `map_device`.
        unsafe { self.0.add(reg).cast::<u32>().read_volatile() }
    }
    fn write32(&self, reg: usize, value: u32) {
        // SAFETY: as in `read32`.
        unsafe { self.0.add(reg).cast::<u32>().write_volatile(value) }
    }
    fn read64(&self, reg: usize) -> u64 {
        // SAFETY: as in `read32`; edu takes 8-byte accesses to its DMA registers.
        unsafe { self.0.add(reg).cast::<u64>().read_volatile() }
    }
    fn write64(&self, reg: usize, value: u64) {
        // SAFETY: as in `read64`.
        unsafe { self.0.add(reg).cast::<u64>().write_volatile(value) }
    }

    /// Runs one DMA of `LEN` bytes and waits for it; false if it never finished.
    fn dma(&self, source: u64, destination: u64, to_ram: bool) -> bool {
        self.dma_len(source, destination, LEN, to_ram)
    }

    /// Runs one DMA of `len` bytes and waits for it; false if it never finished.
    fn dma_len(&self, source: u64, destination: u64, len: usize, to_ram: bool) -> bool {
        self.write64(DMA_SOURCE, source);
        self.write64(DMA_DESTINATION, destination);
        self.write64(DMA_COUNT, len as u64);
        let direction = if to_ram { DMA_TO_RAM } else { 0 };
        self.write64(DMA_COMMAND, DMA_START | direction);
        let start = Instant::now();
        while self.read64(DMA_COMMAND) & DMA_START != 0 {
            if start.elapsed_micros().is_none_or(|us| us > DMA_TIMEOUT_US) {
                return false;
            }
            core::hint::spin_loop();
        }
        true
    }
}

fn main(ctx: &Ctx) -> i32 {
    if ctx.vcpu() != 0 {
        return 0;
    }
    if ctx.args().args().any(|a| a == "bystander") {
        return bystander();
    }
    if ctx.args().args().any(|a| a == "idle") {
        println!("dma-probe: idle, exiting");
        return 0;
    }
    let attack = ctx.args().args().find_map(|a| match a {
        "attack" => Some(ATTACK_HANDLE),
        "attack-compat" => Some(ATTACK_COMPAT),
        _ => None,
    });
    match probe(ctx.boot_info().ram_size.get(), attack) {
        Ok(outside) => not_contained(
            "dma-probe",
            format_args!("edu wrote {outside:#x}, outside its RAM"),
        ),
        Err(why) => {
            println!("dma-probe: FAILED: {why}");
            1
        }
    }
}

/// The interrupt-range addresses of the attack (see the module documentation): with bit
/// 4 (remappable format) set, and the plain compatibility-format one.
const ATTACK_HANDLE: u64 = 0xfee0_1010;
const ATTACK_COMPAT: u64 = 0xfee0_1000;
/// The message data of the attack: vector 0x40, fixed delivery, edge.
const ATTACK_DATA: u32 = 0x40;
/// Where in edu's buffer the attack's data is staged (after what step 2 moved).
const ATTACK_STAGE: u64 = EDU_BUFFER + 0x800;

/// Makes edu write `ATTACK_DATA` to `address` in the interrupt range: the data goes from
/// this sandbox's RAM into edu's buffer, then from there to `address`.
fn interrupt_attack(edu: &Edu, address: u64) -> Result<(), &'static str> {
    // SAFETY: vCPU 0 is the only one here; edu reads the page only while `dma` waits.
    let source = unsafe { &mut *SOURCE.0.get() };
    source[..4].copy_from_slice(&ATTACK_DATA.to_le_bytes());
    if !edu.dma_len(SOURCE.gpa(), ATTACK_STAGE, 4, false) {
        return Err("staging the interrupt message did not finish");
    }
    println!("dma-probe: edu writes {ATTACK_DATA:#x} to {address:#x} (an interrupt)");
    let done = edu.dma_len(ATTACK_STAGE, address, 4, true);
    // Time for it to arrive (the bystander counts what does) or for the fault to stop us.
    delay_micros(200_000);
    println!(
        "dma-probe: interrupt message {}; going on",
        if done { "written" } else { "never finished" }
    );
    Ok(())
}

/// Steps 1-3 (and the interrupt `attack` at that address); returns the address of the
/// DMA outside RAM if the sandbox lives on.
fn probe(ram_size: u64, attack: Option<u64>) -> Result<u64, &'static str> {
    let f = pci::find(EDU, 0).ok_or("no edu device on the bus")?;
    let command = pci::command(f);
    pci::write16(f, COMMAND, command | COMMAND_MEMORY | COMMAND_BUS_MASTER);
    let enabled = pci::command(f) & COMMAND_BUS_MASTER != 0;
    println!(
        "dma-probe: edu at {:02x}:{:02x}.{}, bus master {}",
        f.bus,
        f.device,
        f.function,
        if enabled { "enabled" } else { "refused" }
    );
    if !enabled {
        return Err("bus mastering refused");
    }
    let bar = u64::from(pci::read32(f, pci::BAR0) & !0xf);
    let regs = quest_rt::paging::map_device(bar).map_err(|e| e.as_str())?;
    let edu = Edu(regs.cast::<u8>());
    let id = edu.read32(ID);
    edu.write32(LIVENESS, 0x1234_5678);
    let alive = edu.read32(LIVENESS) == !0x1234_5678;
    println!(
        "dma-probe: edu id {id:#010x}, liveness {}",
        if alive { "ok" } else { "wrong" }
    );
    if id != 0x0100_00ed || !alive {
        return Err("edu's registers do not read as edu's");
    }

    // SAFETY: vCPU 0 is the only one here; edu touches the pages only while `dma` waits.
    let (source, destination) = unsafe { (&mut *SOURCE.0.get(), &mut *DESTINATION.0.get()) };
    for (i, byte) in source.iter_mut().enumerate() {
        *byte = (i as u8).wrapping_mul(31) ^ 0xa5;
    }
    destination.fill(0);
    let from_ram = edu.dma(SOURCE.gpa(), EDU_BUFFER, false);
    let to_ram = from_ram && edu.dma(EDU_BUFFER, DESTINATION.gpa(), true);
    if !to_ram {
        return Err("a DMA inside its RAM did not finish");
    }
    // SAFETY: edu is done with the page (the command's start bit cleared).
    let copied = unsafe { core::ptr::read_volatile(DESTINATION.0.get()) };
    if copied[..LEN] != source[..LEN] || copied[LEN..].iter().any(|&b| b != 0) {
        return Err("the bytes edu copied through its RAM differ");
    }
    println!(
        "dma-probe: DMA in its RAM verified: {LEN} bytes {:#x} -> edu -> {:#x}",
        SOURCE.gpa(),
        DESTINATION.gpa()
    );

    if let Some(address) = attack {
        interrupt_attack(&edu, address)?;
    }

    // The page right above its RAM: no domain maps it.
    println!("dma-probe: DMA to {ram_size:#x}, outside its RAM");
    let done = edu.dma(EDU_BUFFER, ram_size, true);
    // The IOMMU's fault reaches the monitor by NMI; give it time to stop this sandbox.
    delay_micros(200_000);
    println!(
        "dma-probe: still running after the DMA outside its RAM ({})",
        if done { "finished" } else { "never finished" }
    );
    Ok(ram_size)
}

/// Interrupts the bystander took, and the last vector.
static INTERRUPTS: AtomicU32 = AtomicU32::new(0);
static LAST_VECTOR: AtomicU32 = AtomicU32::new(0);

/// The bystander's handler of every vector: counts it.
fn count(vector: u8) {
    INTERRUPTS.fetch_add(1, Ordering::Relaxed);
    LAST_VECTOR.store(u32::from(vector), Ordering::Relaxed);
    quest_rt::interrupts::eoi();
}

/// The other sandbox: takes every vector, ticks for 3 s, then exits 0 if none came.
fn bystander() -> i32 {
    for v in quest_rt::interrupts::FIRST_VECTOR..=255 {
        quest_rt::interrupts::set_handler(v, count);
    }
    quest_rt::interrupts::load();
    quest_rt::interrupts::enable();
    for tick in 1..=30 {
        delay_micros(100_000);
        println!("bystander: tick {tick}");
    }
    quest_rt::interrupts::disable();
    let n = INTERRUPTS.load(Ordering::Relaxed);
    if n != 0 {
        return not_contained(
            "bystander",
            format_args!(
                "{n} interrupts arrived (last vector {:#x})",
                LAST_VECTOR.load(Ordering::Relaxed)
            ),
        );
    }
    println!("bystander: no interrupt arrived");
    println!("bystander: done");
    0
}
