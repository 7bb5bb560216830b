//! Hermit's uhyve hypercalls, decoded (the monitor side of Hermit's "uhyve" platform).
//!
//! A Hermit guest calls its hypervisor with `out dx, eax`: the port is the hypercall and
//! EAX the guest-physical address of a packed parameter struct. The struct layouts come
//! from `uhyve-interface` 0.1.3, the version hermit-kernel 0.11 is built against, so
//! nothing here is kept in sync by hand.
//!
//! Quest serves the console calls (SerialBufferWrite, FileWrite to fd 1 and 2, the
//! single-byte Uart) and Exit. Host file access (open, read, lseek, close, unlink) and the
//! obsolete calls have no host to reach: they answer "failed" in the struct's result
//! field where it has one (so the guest sees a clean I/O error) and are otherwise
//! ignored. Decoding never trusts the guest: the caller reads exactly
//! [`UhyveCall::params_len`] bytes from sandbox RAM after checking them.

use core::mem::{offset_of, size_of};
use uhyve_interface::parameters::{
    CloseParams, CmdsizeParams, CmdvalParams, ExitParams, LseekParams, OpenParams, ReadParams,
    SerialWriteBufferParams, UnlinkParams, WriteParams,
};
use uhyve_interface::HypercallAddress;

/// A uhyve hypercall, by port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UhyveCall {
    /// Kernel log: `{ buf: GPA, len }`.
    SerialBufferWrite,
    /// std's stdout/stderr (and host files): `{ fd, buf: guest-virtual, len }`.
    FileWrite,
    /// One console byte, in EAX itself (no struct).
    SerialWriteByte,
    /// End the sandbox: `{ code }`.
    Exit,
    /// A call Quest does not serve: fail it cleanly.
    Unsupported(Unsupported),
}

/// A uhyve call without a host to serve it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsupported {
    /// FileOpen (`ret` = -1).
    FileOpen,
    /// FileClose (`ret` = -1).
    FileClose,
    /// FileRead (`ret` = -1).
    FileRead,
    /// FileLseek (the new offset, `offset` = -1).
    FileLseek,
    /// FileUnlink (`ret` = -1).
    FileUnlink,
    /// Cmdsize: Hermit 0.11 takes its arguments from the FDT instead (`argc` = 0).
    Cmdsize,
    /// Cmdval: nothing to copy (no result field).
    Cmdval,
    /// Netwrite, Netread, Netstat: never used by any kernel (no struct Quest knows).
    Network,
}

/// Where to write a failed call's result in its parameter struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorResult {
    /// Byte offset of the result field in the struct.
    pub offset: u64,
    /// The bytes to write there (little-endian -1 or 0, as wide as the field).
    pub bytes: &'static [u8],
}

const MINUS_ONE_I32: [u8; 4] = (-1i32).to_le_bytes();
const MINUS_ONE_ISIZE: [u8; 8] = (-1i64).to_le_bytes();
const ZERO_I32: [u8; 4] = 0i32.to_le_bytes();

impl UhyveCall {
    /// The call made through `port`, or `None` when it is no uhyve port at all.
    pub fn from_port(port: u16) -> Option<Self> {
        #[allow(deprecated)] // the network calls are deprecated, but still ports
        let call = match HypercallAddress::try_from(port).ok()? {
            HypercallAddress::SerialBufferWrite => Self::SerialBufferWrite,
            HypercallAddress::FileWrite => Self::FileWrite,
            HypercallAddress::Uart => Self::SerialWriteByte,
            HypercallAddress::Exit => Self::Exit,
            HypercallAddress::FileOpen => Self::Unsupported(Unsupported::FileOpen),
            HypercallAddress::FileClose => Self::Unsupported(Unsupported::FileClose),
            HypercallAddress::FileRead => Self::Unsupported(Unsupported::FileRead),
            HypercallAddress::FileLseek => Self::Unsupported(Unsupported::FileLseek),
            HypercallAddress::FileUnlink => Self::Unsupported(Unsupported::FileUnlink),
            HypercallAddress::Cmdsize => Self::Unsupported(Unsupported::Cmdsize),
            HypercallAddress::Cmdval => Self::Unsupported(Unsupported::Cmdval),
            HypercallAddress::Netwrite | HypercallAddress::Netread | HypercallAddress::Netstat => {
                Self::Unsupported(Unsupported::Network)
            }
            // `HypercallAddress` is non-exhaustive; a newer port is not one Hermit 0.11
            // can make.
            _ => return None,
        };
        Some(call)
    }

    /// Bytes of the parameter struct at EAX (0: EAX is the argument itself, or Quest
    /// never looks at the struct).
    pub fn params_len(self) -> usize {
        match self {
            Self::SerialBufferWrite => size_of::<SerialWriteBufferParams>(),
            Self::FileWrite => size_of::<WriteParams>(),
            Self::Exit => size_of::<ExitParams>(),
            Self::SerialWriteByte => 0,
            Self::Unsupported(u) => u.params_len(),
        }
    }
}

impl Unsupported {
    /// Bytes of the call's parameter struct (0 when Quest does not write into it).
    pub fn params_len(self) -> usize {
        match self {
            Self::FileOpen => size_of::<OpenParams>(),
            Self::FileClose => size_of::<CloseParams>(),
            Self::FileRead => size_of::<ReadParams>(),
            Self::FileLseek => size_of::<LseekParams>(),
            Self::FileUnlink => size_of::<UnlinkParams>(),
            Self::Cmdsize => size_of::<CmdsizeParams>(),
            Self::Cmdval => size_of::<CmdvalParams>(),
            Self::Network => 0,
        }
    }

    /// The "failed" answer to write into the struct, if it has a result field.
    pub fn error_result(self) -> Option<ErrorResult> {
        let (offset, bytes): (usize, &'static [u8]) = match self {
            Self::FileOpen => (offset_of!(OpenParams, ret), &MINUS_ONE_I32),
            Self::FileClose => (offset_of!(CloseParams, ret), &MINUS_ONE_I32),
            Self::FileRead => (offset_of!(ReadParams, ret), &MINUS_ONE_ISIZE),
            Self::FileLseek => (offset_of!(LseekParams, offset), &MINUS_ONE_ISIZE),
            Self::FileUnlink => (offset_of!(UnlinkParams, ret), &MINUS_ONE_I32),
            Self::Cmdsize => (offset_of!(CmdsizeParams, argc), &ZERO_I32),
            Self::Cmdval | Self::Network => return None,
        };
        Some(ErrorResult {
            offset: offset as u64,
            bytes,
        })
    }

    /// Its name, for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::FileOpen => "FileOpen",
            Self::FileClose => "FileClose",
            Self::FileRead => "FileRead",
            Self::FileLseek => "FileLseek",
            Self::FileUnlink => "FileUnlink",
            Self::Cmdsize => "Cmdsize",
            Self::Cmdval => "Cmdval",
            Self::Network => "a network call",
        }
    }
}

/// SerialBufferWrite's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SerialBuffer {
    /// Guest-physical address of the bytes.
    pub buf: u64,
    /// Their number.
    pub len: u64,
}

/// FileWrite's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileWrite {
    /// File descriptor (1 and 2 are stdout and stderr).
    pub fd: i32,
    /// Guest-virtual address of the bytes.
    pub buf: u64,
    /// Their number.
    pub len: u64,
}

impl FileWrite {
    /// Whether the write goes to the console (stdout or stderr).
    pub fn is_console(&self) -> bool {
        self.fd == 1 || self.fd == 2
    }
}

fn u64_at(raw: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(raw.get(at..at + 8)?.try_into().ok()?))
}

fn i32_at(raw: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_le_bytes(raw.get(at..at + 4)?.try_into().ok()?))
}

/// Decodes SerialBufferWrite's struct (`None` if `raw` is too short).
pub fn serial_buffer(raw: &[u8]) -> Option<SerialBuffer> {
    Some(SerialBuffer {
        buf: u64_at(raw, offset_of!(SerialWriteBufferParams, buf))?,
        len: u64_at(raw, offset_of!(SerialWriteBufferParams, len))?,
    })
}

/// Decodes FileWrite's struct (`None` if `raw` is too short).
pub fn file_write(raw: &[u8]) -> Option<FileWrite> {
    Some(FileWrite {
        fd: i32_at(raw, offset_of!(WriteParams, fd))?,
        buf: u64_at(raw, offset_of!(WriteParams, buf))?,
        len: u64_at(raw, offset_of!(WriteParams, len))?,
    })
}

/// Decodes Exit's struct: the exit status (`None` if `raw` is too short).
pub fn exit_code(raw: &[u8]) -> Option<i32> {
    i32_at(raw, offset_of!(ExitParams, arg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_hermit_uses_are_known() {
        assert_eq!(
            UhyveCall::from_port(0x880),
            Some(UhyveCall::SerialBufferWrite)
        );
        assert_eq!(UhyveCall::from_port(0x400), Some(UhyveCall::FileWrite));
        assert_eq!(UhyveCall::from_port(0x540), Some(UhyveCall::Exit));
        assert_eq!(
            UhyveCall::from_port(0x800),
            Some(UhyveCall::SerialWriteByte)
        );
        assert_eq!(
            UhyveCall::from_port(0x440),
            Some(UhyveCall::Unsupported(Unsupported::FileOpen))
        );
        assert_eq!(UhyveCall::from_port(0x3f8), None);
        assert_eq!(UhyveCall::from_port(0x881), None);
    }

    #[test]
    fn struct_layouts_are_the_packed_ones() {
        assert_eq!(UhyveCall::SerialBufferWrite.params_len(), 16);
        assert_eq!(UhyveCall::FileWrite.params_len(), 20);
        assert_eq!(UhyveCall::Exit.params_len(), 4);
        let mut raw = [0u8; 20];
        raw[..4].copy_from_slice(&2i32.to_le_bytes());
        raw[4..12].copy_from_slice(&0x4000_1234u64.to_le_bytes());
        raw[12..].copy_from_slice(&77u64.to_le_bytes());
        let w = file_write(&raw).unwrap();
        assert_eq!((w.fd, w.buf, w.len), (2, 0x4000_1234, 77));
        assert!(w.is_console());
        assert!(
            file_write(&raw[..19]).is_none(),
            "short structs are refused"
        );
        assert_eq!(
            serial_buffer(&raw[4..]),
            Some(SerialBuffer {
                buf: 0x4000_1234,
                len: 77
            })
        );
        assert_eq!(exit_code(&(-3i32).to_le_bytes()), Some(-3));
        assert_eq!(exit_code(&[1, 2]), None);
    }

    #[test]
    fn unsupported_calls_fail_inside_their_struct() {
        let all = [
            (0x440, Unsupported::FileOpen),
            (0x480, Unsupported::FileClose),
            (0x500, Unsupported::FileRead),
            (0x580, Unsupported::FileLseek),
            (0x840, Unsupported::FileUnlink),
            (0x740, Unsupported::Cmdsize),
            (0x780, Unsupported::Cmdval),
            (0x640, Unsupported::Network),
            (0x680, Unsupported::Network),
            (0x700, Unsupported::Network),
        ];
        for (port, want) in all {
            let Some(UhyveCall::Unsupported(u)) = UhyveCall::from_port(port) else {
                panic!("{port:#x} is not an unsupported call");
            };
            assert_eq!(u, want);
            if let Some(r) = u.error_result() {
                let end = r.offset as usize + r.bytes.len();
                assert!(
                    end <= u.params_len(),
                    "{}: result inside the struct",
                    u.name()
                );
            }
        }
        // OpenParams { name: u64, flags: i32, mode: i32, ret: i32 }: ret at 16.
        let open = Unsupported::FileOpen.error_result().unwrap();
        assert_eq!((open.offset, open.bytes), (16, &(-1i32).to_le_bytes()[..]));
        // ReadParams { fd: i32, buf: u64, len: u64, ret: i64 }: ret at 20, 8 bytes.
        let read = Unsupported::FileRead.error_result().unwrap();
        assert_eq!((read.offset, read.bytes.len()), (20, 8));
        // LseekParams { fd: i32, offset: i64, whence: i32 }: the result is the offset.
        assert_eq!(Unsupported::FileLseek.error_result().unwrap().offset, 4);
        assert_eq!(Unsupported::Network.error_result(), None);
    }
}
