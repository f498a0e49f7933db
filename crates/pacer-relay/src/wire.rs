//! Frames on a relay connection. The connection opens with a preface: the 8
//! bytes `PACERLY1` and the be32 number of page slots both ends keep. Then every
//! frame: u8 kind, be32 stream (one per VM on the connection), then by kind:
//!
//! | kind | body |
//! |---|---|
//! | OPEN 1 | be16 length + the VM's name |
//! | DATA 2 | be32 length + stream bytes |
//! | PAGE 3 | one page (the receiver stores it in its next slot) |
//! | REF 4 | be32 slot: the page stored there |
//! | CLOSE 5 | u8: 0 the source's stream ended, 1 it broke off |

use thiserror::Error;

pub(crate) const OPEN: u8 = 1;
pub(crate) const DATA: u8 = 2;
pub(crate) const PAGE: u8 = 3;
pub(crate) const REF: u8 = 4;
pub(crate) const CLOSE: u8 = 5;

/// The first bytes of a connection.
pub(crate) const MAGIC: &[u8; 8] = b"PACERLY1";
/// Preface bytes: the magic and the store's capacity in pages.
pub const PREFACE: usize = 12;
/// Most pages a receiver agrees to keep (4 GiB).
pub const MAX_CAPACITY: u32 = 1 << 20;

/// Frame header bytes (kind and stream).
pub(crate) const HEADER: usize = 5;

/// What a page sent whole costs on a relay connection, its 8-byte QEMU record header
/// (a DATA frame) included: 4118 bytes, against 4104 in QEMU's own stream.
pub const PAGE_COST: u64 = (HEADER + 4 + 8 + HEADER + 4096) as u64;
/// What a page sent as a reference costs, its record header included.
pub const REF_COST: u64 = (HEADER + 4 + 8 + HEADER + 4) as u64;

/// A relay connection carried something its receiver cannot use: the sender is
/// not a Pacer relay of this version, or the bytes were damaged.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// An unknown frame kind.
    #[error("relay frame of unknown kind {0} (the sending relay is of another version?)")]
    UnknownKind(u8),
    /// A reference to a slot never filled.
    #[error("relay frame refers to page slot {0}, which was never sent")]
    EmptySlot(u32),
    /// Bytes for a stream never opened, or opened twice.
    #[error("relay frame for stream {0}, which is not open")]
    NotOpen(u32),
    /// A stream opened twice.
    #[error("relay stream {0} opened twice")]
    OpenTwice(u32),
    /// The connection did not start with a relay's preface.
    #[error("not a Pacer relay connection (it must start with PACERLY1)")]
    NotRelay,
    /// The sender asks the receiver to keep more pages than it will.
    #[error("relay sender asks for {0} page slots; at most {MAX_CAPACITY} are kept")]
    TooBig(u32),
}

pub(crate) fn header(out: &mut Vec<u8>, kind: u8, stream: u32) {
    out.push(kind);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// Appends a DATA frame (split so that a length always fits).
pub(crate) fn data(out: &mut Vec<u8>, stream: u32, bytes: &[u8]) {
    for chunk in bytes.chunks(u32::MAX as usize) {
        header(out, DATA, stream);
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
    }
}
