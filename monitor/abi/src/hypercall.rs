//! Hypercalls: how a sandbox asks its monitor for something.
//!
//! Quest's own calls use `VMCALL` with the number in RAX and arguments in RDI, RSI, RDX;
//! the result comes back in RAX ([`OK`] or an error code below). Hermit sandboxes use the
//! uhyve port convention instead (see [`uhyve`]).

/// Write bytes to the console: RDI = guest-physical address, RSI = length.
pub const CONSOLE_WRITE: u64 = 1;
/// End the sandbox: RDI = exit status (low 32 bits, signed).
pub const EXIT: u64 = 2;
/// Sleep until a doorbell arrives for this vCPU (or returns at once if one is pending).
pub const WAIT: u64 = 3;
/// Ring the peer of a channel: RDI = index of the channel in this sandbox's directory.
pub const DOORBELL: u64 = 4;

/// Most bytes one [`CONSOLE_WRITE`] may pass.
pub const CONSOLE_WRITE_MAX: u64 = 4096;

/// The call succeeded.
pub const OK: u64 = 0;
/// An argument (address, length, index) was invalid.
pub const ERR_INVALID: u64 = u64::MAX - 21;
/// The hypercall number is unknown.
pub const ERR_UNKNOWN: u64 = u64::MAX - 37;

/// The uhyve hypercall ports Hermit uses (`out dx, eax` with port = number and EAX = the
/// guest-physical address of a packed parameter struct from `uhyve-interface`).
pub mod uhyve {
    /// Kernel log bytes: `{ buf: GPA, len }`.
    pub const SERIAL_BUFFER_WRITE: u16 = 0x880;
    /// std stdout/stderr: `{ fd, buf: guest-virtual, len }`.
    pub const FILE_WRITE: u16 = 0x400;
    /// End the sandbox: `{ code }`.
    pub const EXIT: u16 = 0x540;
    /// Single-byte serial output (older kernels).
    pub const SERIAL_WRITE_BYTE: u16 = 0x800;
}
