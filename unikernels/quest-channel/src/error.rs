//! Errors. Each variant's doc line is its message.

use core::fmt;

/// Why the memory given for a channel cannot hold one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// A channel area is at address 0.
    Null,
    /// A channel area is not 8-byte aligned.
    Misaligned,
    /// The data area is too small for the ring header and one message.
    DataTooSmall {
        /// Its size in bytes.
        len: usize,
    },
    /// The acknowledgement area is too small for the reader's index and sleep counter.
    AckTooSmall {
        /// Its size in bytes.
        len: usize,
    },
    /// The data and acknowledgement areas overlap (or wrap around the address space).
    Overlap,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("a channel area is at address 0"),
            Self::Misaligned => f.write_str("a channel area is not 8-byte aligned"),
            Self::DataTooSmall { len } => write!(
                f,
                "the data area ({len} bytes) is too small for the ring header and one message"
            ),
            Self::AckTooSmall { len } => write!(
                f,
                "the acknowledgement area ({len} bytes) is too small for the reader's index"
            ),
            Self::Overlap => f.write_str("the data and acknowledgement areas overlap"),
        }
    }
}

impl core::error::Error for LayoutError {}

/// Why a channel could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// There is no valid channel directory (bad magic or entry count).
    DirectoryMissing,
    /// No channel of that name is connected to this sandbox.
    NoSuchChannel,
    /// This sandbox is not the channel's writer (it holds another end of it).
    NotWriter,
    /// This sandbox is not the channel's reader (it holds another end of it).
    NotReader,
    /// This end of the channel is already open in this sandbox.
    AlreadyOpen,
    /// The directory entry describes memory that cannot hold a channel.
    Layout(LayoutError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DirectoryMissing => f.write_str("there is no valid channel directory"),
            Self::NoSuchChannel => {
                f.write_str("no channel of that name is connected to this sandbox")
            }
            Self::NotWriter => f.write_str("this sandbox is not the channel's writer"),
            Self::NotReader => f.write_str("this sandbox is not the channel's reader"),
            Self::AlreadyOpen => f.write_str("this end of the channel is already open"),
            Self::Layout(e) => write!(f, "bad channel memory: {e}"),
        }
    }
}

impl core::error::Error for OpenError {}

impl From<LayoutError> for OpenError {
    fn from(e: LayoutError) -> Self {
        Self::Layout(e)
    }
}

/// Why a message was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The message is larger than the channel can ever hold.
    TooLarge {
        /// The message's length.
        len: usize,
        /// The largest message the channel can hold.
        max: usize,
    },
    /// The ring has no room for the message now (only from `try_send`).
    Full,
    /// The channel is corrupt: the reader's index is impossible. The channel stays closed.
    Corrupt,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len, max } => write!(
                f,
                "a {len}-byte message is larger than the channel can ever hold ({max} bytes)"
            ),
            Self::Full => f.write_str("the channel is full"),
            Self::Corrupt => f.write_str("the channel is corrupt (impossible reader index)"),
        }
    }
}

impl core::error::Error for SendError {}

/// Why no message was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The next message does not fit in the buffer; it stays in the channel.
    BufferTooSmall {
        /// The message's length.
        needed: usize,
    },
    /// The channel is corrupt: the writer's index or a record header is impossible. The
    /// channel stays closed.
    Corrupt,
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BufferTooSmall { needed } => write!(
                f,
                "the next message ({needed} bytes) does not fit in the buffer"
            ),
            Self::Corrupt => {
                f.write_str("the channel is corrupt (impossible writer index or record header)")
            }
        }
    }
}

impl core::error::Error for RecvError {}
