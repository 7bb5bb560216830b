//! `quest-channel`: shared-memory message channels between Quest sandboxes.
//!
//! A channel is memory shared by exactly two sandboxes, mapped by the monitor at boot: a
//! **data area** (the writer's, read-only for the reader) followed by an
//! **acknowledgement area** (the reader's, read-only for the writer). Messages flow core to
//! core through a single-producer, single-consumer ring in that memory, with no lock, no
//! allocation and no VM exit: the monitor is not involved after boot (except for the
//! optional [`Doorbell`], which lets a blocked endpoint sleep).
//!
//! ```ignore
//! let mut tx = quest_channel::Sender::open("ping")?;
//! tx.send(b"hello")?;
//! let mut rx = quest_channel::Receiver::open("pong")?;
//! let mut buf = [0u8; 4096];
//! let n = rx.recv(&mut buf)?;
//! ```
//!
//! The crate is `no_std` and allocates nothing, so it works in a Hermit std application
//! and in a bare `quest-rt` one alike. [`Sender::open`] and [`Receiver::open`] find the
//! channel by name in the directory at [`quest_abi::layout::DIRECTORY_GPA`] and exist only
//! on the guest targets (`target_os = "none"` or `"hermit"`); elsewhere (the host tests)
//! endpoints are built with [`Sender::from_memory`] / [`Receiver::from_memory`] over
//! ordinary memory, and [`Directory::from_bytes`] reads a directory from any byte slice.
//!
//! # Wire format
//! This is an ABI between two sandboxes (see [`wire`] for the constants). All values are
//! little-endian `u64`s at 8-byte aligned offsets, accessed only with atomic 64-bit loads
//! and stores. Channel memory is zeroed at boot, which is the empty state.
//!
//! ```text
//! data area (writer RW, reader RO)              ack area (reader RW, writer RO)
//! +0    write index  (own cache line)           +0    read index    (own cache line)
//! +64   writer sleep counter                    +128  reader sleep counter
//! +128  ring: data_size - 128 bytes,            +256  latency statistics
//!       rounded down to whole words                   (quest_abi::latency)
//! ```
//! - The **indices** count ring bytes ever produced / consumed: monotonic, multiples of 8,
//!   `read <= write <= read + ring_size`. A byte index `i` lives at ring offset
//!   `i mod ring_size` (the ring size need not be a power of two).
//! - A **record** is one header word, `"QREC"` in the high 32 bits (`u32` LE of those
//!   bytes) and the payload length in the low 32 bits, then the writer's TSC when it wrote
//!   the record (the **stamp**), then the payload, zero-padded to a word multiple. Records are contiguous in index space; at the end of the ring a record
//!   simply continues at its start (no padding records), so the largest message is
//!   `ring_size - 16` bytes ([`max_message_len`]).
//! - **Latency**: the reader converts each stamp into its own clock (the calibrated TSC
//!   offset between the two cores, [`Receiver::with_tsc_offset`]) and records the cycles
//!   until `recv` returns in its acknowledgement area ([`Receiver::latency`]), where the
//!   monitor reads them at the end of the run; a stamp is only as honest as its writer.
//! - The writer stores the record's words (Relaxed), then the new write index (Release).
//!   The reader loads the write index (Acquire), copies the record out, then stores the new
//!   read index (Release); the writer loads it (Acquire) only when the space it last knew
//!   of is used up.
//! - **Sleeping** (only with a [`Doorbell`]): an endpoint about to sleep increments its
//!   sleep counter, issues a SeqCst fence and re-reads the peer's index; it sleeps only if
//!   that did not move. After each publish (consume) the peer issues a SeqCst fence, reads
//!   the counter, and rings the doorbell once per value it has not rung for.
//!
//! # Memory contract
//! Building an endpoint over raw memory ([`Sender::from_memory`],
//! [`Receiver::from_memory`]) is `unsafe`: the caller promises that `memory.data` is valid
//! for `memory.data_len` bytes and `memory.ack` for `memory.ack_len` bytes for as long as
//! the endpoint exists, writable where the endpoint writes (the data area for a sender,
//! the acknowledgement area for a receiver) and readable elsewhere; that both areas are
//! accessed (by anyone) only through aligned atomic operations; and that no other endpoint
//! of the same role uses the same channel at the same time. [`Sender::open`] and
//! [`Receiver::open`] keep this contract themselves.
//!
//! # A hostile peer
//! Neither endpoint trusts the other. Every shared value is read once into a local and
//! checked there; payloads are copied word by word with atomic loads, within the ring
//! whatever the indices say. A reader rejects a write index that is not a word multiple,
//! moves backwards, or runs more than a ring ahead, and a record whose tag is wrong or
//! whose length exceeds the ring or what was published. A writer rejects a read index that
//! is not a word multiple, moves backwards, or passes the write index. Either way the
//! endpoint reports `Corrupt` from then on; it never panics, never reads or writes outside
//! the channel, and other channels are unaffected. What a hostile peer can still do is
//! garble its own messages, stall, or (against an endpoint with a doorbell) bump its sleep
//! counter so that every message costs one doorbell hypercall: never more than one.
#![cfg_attr(not(test), no_std)]

mod clock;
mod directory;
mod doorbell;
mod endpoint;
mod error;
mod receiver;
mod sender;
mod shared;
pub mod wire;

pub use directory::{ChannelInfo, Directory, Role};
pub use doorbell::{Doorbell, Spin};
pub use error::{LayoutError, OpenError, RecvError, SendError};
pub use quest_abi::latency::Latency;
pub use receiver::Receiver;
pub use sender::Sender;
pub use shared::ChannelMemory;
pub use wire::max_message_len;

#[cfg(test)]
mod tests;
