//! The console protocol of the Pacer guest program (`pacer-guest`), for the guest and for
//! everyone who reads its console.
//!
//! The guest prints one JSON object a line on its serial console, prefixed by [`MARKER`]
//! (`PACER {"kind":"status",...}`); each kind of line is one variant of [`GuestLine`]. It
//! reads [`Command`]s, one word a line, from the same console.
//!
//! Readers find lines in whatever the console holds: the marker may follow a timestamp or
//! kernel noise, lines may end in `\r`, and anything that is not a guest line (or a kind
//! this crate does not know) is skipped.
//!
//! ```
//! use pacer_guest_proto::{scan, GuestLine};
//!
//! let console = "[ 1.2] boot\r\nPACER {\"kind\":\"disk_filled\",\"bytes\":8388608,\"fill_ms\":19,\"fill_mbps\":429.03}\r\n";
//! let filled = scan(console).find_map(|l| match l {
//!     GuestLine::DiskFilled(d) => Some(d),
//!     _ => None,
//! });
//! assert_eq!(filled.unwrap().fill_ms, 19);
//! ```
//!
//! Built into the static guest too: no I/O here, only text in and out.
#![warn(missing_docs)]

mod command;
mod lines;
mod num;

use serde::{Deserialize, Serialize};

pub use command::{Command, UnknownCommand};
pub use lines::{
    AppPhase, DiskFilledLine, DiskPhase, ErrorLine, ReadyLine, StatusLine, VerifyLine,
};

/// What starts every guest line on the console.
pub const MARKER: &str = "PACER ";

/// One line the guest prints: `PACER ` and a JSON object whose `kind` names the variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum GuestLine {
    /// `ready`: the working set is filled, the workload starts; the configuration in use.
    Ready(ReadyLine),
    /// `status`: periodic progress.
    Status(StatusLine),
    /// `verify`: the answer to [`Command::Verify`].
    Verify(VerifyLine),
    /// `disk_filled`: the disk workload's initial fill is done.
    DiskFilled(DiskFilledLine),
    /// `error`: a problem, from the program (or from the image's init when it exits).
    Error(ErrorLine),
}

impl GuestLine {
    /// The line's `kind` on the wire (`"status"`).
    pub fn kind(&self) -> &'static str {
        match self {
            GuestLine::Ready(_) => "ready",
            GuestLine::Status(_) => "status",
            GuestLine::Verify(_) => "verify",
            GuestLine::DiskFilled(_) => "disk_filled",
            GuestLine::Error(_) => "error",
        }
    }

    /// The line as the guest prints it, `PACER {json}`, without a newline.
    pub fn to_line(&self) -> String {
        let json = serde_json::to_string(self).expect("guest lines always serialize");
        let mut line = String::with_capacity(MARKER.len() + json.len());
        line.push_str(MARKER);
        line.push_str(&json);
        line
    }

    /// An `error` line with `message`.
    pub fn error(message: impl Into<String>) -> GuestLine {
        GuestLine::Error(ErrorLine {
            message: message.into(),
        })
    }
}

/// The guest line in one console line, wherever its marker is (after a timestamp, say);
/// `None` if there is none, it is broken, or its kind is unknown.
///
/// Text after the JSON object (a trailing `\r`, noise from another writer) is ignored.
pub fn parse_line(line: &str) -> Option<GuestLine> {
    line.match_indices(MARKER).find_map(|(i, _)| {
        let json = &line[i + MARKER.len()..];
        serde_json::Deserializer::from_str(json)
            .into_iter::<GuestLine>()
            .next()?
            .ok()
    })
}

/// Every guest line in a console text, in order; other and broken lines are skipped.
///
/// Lines end at `\n` or `\r` (consoles mix both).
pub fn scan(text: &str) -> impl Iterator<Item = GuestLine> + '_ {
    text.split(['\n', '\r']).filter_map(parse_line)
}

/// The last status line in a console text.
pub fn latest_status(text: &str) -> Option<StatusLine> {
    scan(text)
        .filter_map(|l| match l {
            GuestLine::Status(s) => Some(s),
            _ => None,
        })
        .last()
}

/// How many status lines a console text holds (one or more: the guest is up and running).
pub fn status_count(text: &str) -> usize {
    scan(text)
        .filter(|l| matches!(l, GuestLine::Status(_)))
        .count()
}

#[cfg(test)]
mod tests;
