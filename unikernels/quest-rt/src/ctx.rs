//! What `main` gets: who it is (vCPU, core, sandbox), its boot info, arguments and channels.

use quest_abi::args::ArgsBlock;
use quest_abi::bootinfo::BootInfo;
use quest_abi::directory::{
    DirectoryEntry, DirectoryHeader, DIRECTORY_MAGIC, MAX_DIRECTORY_ENTRIES,
};
use quest_abi::layout::DIRECTORY_SIZE;
use zerocopy::FromBytes;

/// The context of one vCPU of a bare sandbox.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    vcpu: u32,
    info: &'static BootInfo,
}

impl Ctx {
    /// A context for `vcpu` (checked by the caller to be below `info.num_vcpus`).
    pub(crate) fn new(vcpu: u32, info: &'static BootInfo) -> Self {
        Self { vcpu, info }
    }

    /// This vCPU's index in its sandbox (0 = the one that exits the sandbox).
    pub fn vcpu(&self) -> u32 {
        self.vcpu
    }

    /// Number of vCPUs of the sandbox.
    pub fn num_vcpus(&self) -> u32 {
        self.info.num_vcpus.get()
    }

    /// The logical core (as the manifest numbers them) this vCPU runs on.
    pub fn core(&self) -> u32 {
        self.info
            .cores
            .get(self.vcpu as usize)
            .map_or(u32::MAX, |c| c.get())
    }

    /// The sandbox's name.
    pub fn name(&self) -> &'static str {
        quest_abi::name_str(&self.info.name).unwrap_or("?")
    }

    /// The boot information block.
    pub fn boot_info(&self) -> &'static BootInfo {
        self.info
    }

    /// How many times the sandbox has been launched (1 at first boot, +1 per restart).
    pub fn launch_count(&self) -> u32 {
        self.info.launch_count.get()
    }

    /// The manifest's `args` and `env` (empty if the block is missing or out of bounds).
    pub fn args(&self) -> ArgsBlock<'static> {
        let info = self.info;
        let (gpa, size) = (info.args_gpa.get(), info.args_size.get() as u64);
        let in_ram = gpa != 0
            && gpa
                .checked_add(size)
                .is_some_and(|e| e <= info.ram_size.get());
        if !in_ram {
            return ArgsBlock::new(&[], 0, 0);
        }
        // SAFETY: the block lies inside this sandbox's RAM (checked above), which the boot
        // page tables identity-map; the host wrote it and nothing writes it afterwards.
        let bytes = unsafe { core::slice::from_raw_parts(gpa as *const u8, size as usize) };
        ArgsBlock::new(bytes, info.argc.get(), info.envc.get())
    }

    /// The channels this sandbox is an endpoint of, from its channel directory.
    pub fn channels(&self) -> &'static [DirectoryEntry] {
        let gpa = self.info.directory_gpa.get();
        if gpa == 0 {
            return &[];
        }
        // SAFETY: a non-zero `directory_gpa` names the directory page the monitor maps
        // read-only into every sandbox with channels (and into its boot page tables); its
        // contents are read as plain bytes and checked below.
        let page =
            unsafe { core::slice::from_raw_parts(gpa as *const u8, DIRECTORY_SIZE as usize) };
        let Ok((header, rest)) = DirectoryHeader::ref_from_prefix(page) else {
            return &[];
        };
        if header.magic != DIRECTORY_MAGIC {
            return &[];
        }
        let count = (header.count.get() as usize).min(MAX_DIRECTORY_ENTRIES);
        <[DirectoryEntry]>::ref_from_prefix_with_elems(rest, count).map_or(&[], |(e, _)| e)
    }

    /// The channel named `name`, if this sandbox is one of its endpoints.
    pub fn channel(&self, name: &str) -> Option<&'static DirectoryEntry> {
        self.channels()
            .iter()
            .find(|e| quest_abi::name_str(&e.name) == Some(name))
    }
}
