//! Frames on a relay connection. Every frame: u8 kind, be32 stream (one per VM on
//! the connection), then by kind:
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

/// Frame header bytes (kind and stream).
pub(crate) const HEADER: usize = 5;

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
