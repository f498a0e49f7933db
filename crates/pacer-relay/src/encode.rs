//! The sending relay: VMs' migration streams in, frames for one connection out.

use std::collections::HashMap;

use pacer_qemu::stream::{Token, Tokenizer};

use crate::store::{SendStore, Sent};
use crate::wire;

/// What went by on the sending side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncoderStats {
    /// Stream bytes in, over every VM.
    pub stream_bytes: u64,
    /// Frame bytes out.
    pub wire_bytes: u64,
    /// Pages seen.
    pub pages: u64,
    /// Pages sent as references.
    pub refs: u64,
}

impl EncoderStats {
    fn add(&mut self, o: EncoderStats) {
        self.stream_bytes += o.stream_bytes;
        self.wire_bytes += o.wire_bytes;
        self.pages += o.pages;
        self.refs += o.refs;
    }
}

struct StreamState {
    tok: Tokenizer,
    stats: EncoderStats,
    dedup: bool,
}

/// Encodes any number of VMs' streams onto one connection, sending each page's
/// content at most once while the receiver still holds it.
pub struct Encoder {
    store: SendStore,
    capacity: u32,
    dedup: bool,
    streams: HashMap<u32, StreamState>,
    stats: EncoderStats,
    /// Raw bytes waiting to go as one DATA frame.
    pending: Vec<u8>,
}

impl Encoder {
    /// An encoder whose receiver keeps `capacity` pages; without `dedup` every
    /// stream goes as it is, in DATA frames (the relay as a plain forwarder).
    pub fn new(capacity: u32, dedup: bool) -> Encoder {
        let capacity = if dedup { capacity.clamp(1, wire::MAX_CAPACITY) } else { 1 };
        Encoder {
            store: SendStore::new(capacity),
            capacity,
            dedup,
            streams: HashMap::new(),
            stats: EncoderStats::default(),
            pending: Vec::new(),
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> EncoderStats {
        self.stats
    }

    /// Why a stream goes through without dedup from some point on, if it does.
    pub fn gave_up(&self, stream: u32) -> Option<&str> {
        self.streams.get(&stream).and_then(|s| s.tok.gave_up())
    }

    /// Counts of one open stream (its share of the wire: its frames).
    pub fn stream_stats(&self, stream: u32) -> Option<EncoderStats> {
        self.streams.get(&stream).map(|s| s.stats)
    }

    /// The connection's preface, first on the wire: it tells the receiver how
    /// many pages to keep.
    pub fn preface(&mut self, out: &mut Vec<u8>) {
        self.stats.wire_bytes += wire::PREFACE as u64;
        out.extend_from_slice(wire::MAGIC);
        out.extend_from_slice(&self.capacity.to_be_bytes());
    }

    /// Starts stream `stream` for VM `name`, deduplicated against everything on the
    /// connection if both the encoder and `dedup` say so.
    pub fn open_with(&mut self, stream: u32, name: &str, dedup: bool, out: &mut Vec<u8>) {
        let start = out.len();
        wire::header(out, wire::OPEN, stream);
        let n = &name.as_bytes()[..name.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(n.len() as u16).to_be_bytes());
        out.extend_from_slice(n);
        let n = (out.len() - start) as u64;
        let stats = EncoderStats { wire_bytes: n, ..EncoderStats::default() };
        self.streams.insert(stream, StreamState { tok: Tokenizer::new(), stats, dedup: dedup && self.dedup });
        self.stats.wire_bytes += n;
    }

    /// Starts stream `stream` for VM `name` (deduplicated if the encoder is).
    pub fn open(&mut self, stream: u32, name: &str, out: &mut Vec<u8>) {
        self.open_with(stream, name, true, out)
    }

    /// The next bytes of `stream`'s migration stream; frames are appended to `out`.
    pub fn feed(&mut self, stream: u32, data: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let Some(st) = self.streams.get_mut(&stream) else {
            debug_assert!(false, "feed before open");
            return;
        };
        let mut add = EncoderStats { stream_bytes: data.len() as u64, ..EncoderStats::default() };
        if !st.dedup {
            wire::data(out, stream, data);
        } else {
            let (store, pending) = (&mut self.store, &mut self.pending);
            st.tok.feed(data, |t| match t {
                Token::Raw(b) => pending.extend_from_slice(b),
                Token::Page { data, .. } => {
                    add.pages += 1;
                    flush(pending, stream, out);
                    match store.offer(data) {
                        Sent::Ref(slot) => {
                            add.refs += 1;
                            wire::header(out, wire::REF, stream);
                            out.extend_from_slice(&slot.to_be_bytes());
                        }
                        Sent::New(_) => {
                            wire::header(out, wire::PAGE, stream);
                            out.extend_from_slice(data);
                        }
                    }
                }
            });
            flush(&mut self.pending, stream, out);
        }
        add.wire_bytes = (out.len() - start) as u64;
        st.stats.add(add);
        self.stats.add(add);
    }

    /// Ends `stream`: `clean` when its source closed it after the whole stream.
    pub fn close(&mut self, stream: u32, clean: bool, out: &mut Vec<u8>) {
        wire::header(out, wire::CLOSE, stream);
        out.push(if clean { 0 } else { 1 });
        self.stats.wire_bytes += wire::HEADER as u64 + 1;
        self.streams.remove(&stream);
    }
}

fn flush(pending: &mut Vec<u8>, stream: u32, out: &mut Vec<u8>) {
    if !pending.is_empty() {
        wire::data(out, stream, pending);
        pending.clear();
    }
}
