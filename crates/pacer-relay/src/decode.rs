//! The receiving relay: frames from one connection in, each VM's stream out.

use std::collections::HashSet;

use pacer_qemu::stream::PAGE;

use crate::store::Ring;
use crate::wire::{self, WireError};

/// What a connection said.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A VM's stream begins.
    Open {
        /// Stream number on this connection.
        stream: u32,
        /// The VM.
        name: String,
    },
    /// The next bytes of a VM's stream, as its source QEMU wrote them.
    Data {
        /// Stream number.
        stream: u32,
        /// Bytes.
        bytes: &'a [u8],
    },
    /// A VM's stream ends (`clean`: all of it was sent).
    Close {
        /// Stream number.
        stream: u32,
        /// Whether the source's stream ended rather than broke off.
        clean: bool,
    },
}

/// Decodes one connection's frames.
pub struct Decoder {
    buf: Vec<u8>,
    /// None until the preface said how many pages to keep.
    ring: Option<Ring>,
    open: HashSet<u32>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder at the start of a connection (it reads the preface first).
    pub fn new() -> Decoder {
        Decoder { buf: Vec::new(), ring: None, open: HashSet::new() }
    }

    /// Takes the next bytes of the connection and hands every complete frame's
    /// meaning to `sink`, in order. After an error the connection is unusable.
    pub fn feed(&mut self, data: &[u8], mut sink: impl FnMut(Event<'_>)) -> Result<(), WireError> {
        self.buf.extend_from_slice(data);
        let buf = std::mem::take(&mut self.buf);
        let mut pos = 0;
        let result = loop {
            match self.frame(&buf[pos..], &mut sink) {
                Ok(Some(n)) => pos += n,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let mut buf = buf;
        buf.drain(..pos);
        self.buf = buf;
        result
    }

    /// One frame at the start of `b`: its length, or None when incomplete.
    fn frame(&mut self, b: &[u8], sink: &mut impl FnMut(Event<'_>)) -> Result<Option<usize>, WireError> {
        let Some(ring) = self.ring.as_mut() else {
            let n = b.len().min(wire::MAGIC.len());
            if b[..n] != wire::MAGIC[..n] {
                return Err(WireError::NotRelay);
            }
            let Some(c) = b.get(8..12) else { return Ok(None) };
            let capacity = u32::from_be_bytes(c.try_into().unwrap());
            if capacity > wire::MAX_CAPACITY {
                return Err(WireError::TooBig(capacity));
            }
            self.ring = Some(Ring::new(capacity));
            return Ok(Some(wire::PREFACE));
        };
        if b.len() < wire::HEADER {
            return Ok(None);
        }
        let kind = b[0];
        let stream = u32::from_be_bytes(b[1..5].try_into().unwrap());
        let body = &b[wire::HEADER..];
        let be32 = |at: usize| body.get(at..at + 4).map(|s| u32::from_be_bytes(s.try_into().unwrap()));
        if kind != wire::OPEN && !self.open.contains(&stream) && kind <= wire::CLOSE {
            return Err(WireError::NotOpen(stream));
        }
        let n = match kind {
            wire::OPEN => {
                let Some(len) = body.get(..2).map(|s| u16::from_be_bytes([s[0], s[1]]) as usize) else {
                    return Ok(None);
                };
                let Some(name) = body.get(2..2 + len) else { return Ok(None) };
                if !self.open.insert(stream) {
                    return Err(WireError::OpenTwice(stream));
                }
                sink(Event::Open { stream, name: String::from_utf8_lossy(name).into_owned() });
                2 + len
            }
            wire::DATA => {
                let Some(len) = be32(0) else { return Ok(None) };
                let Some(bytes) = body.get(4..4 + len as usize) else { return Ok(None) };
                sink(Event::Data { stream, bytes });
                4 + len as usize
            }
            wire::PAGE => {
                let Some(page) = body.get(..PAGE) else { return Ok(None) };
                let slot = ring.push(page);
                sink(Event::Data { stream, bytes: ring.get(slot).expect("just stored") });
                PAGE
            }
            wire::REF => {
                let Some(slot) = be32(0) else { return Ok(None) };
                let page = ring.get(slot).ok_or(WireError::EmptySlot(slot))?;
                sink(Event::Data { stream, bytes: page });
                4
            }
            wire::CLOSE => {
                let Some(how) = body.first() else { return Ok(None) };
                self.open.remove(&stream);
                sink(Event::Close { stream, clean: *how == 0 });
                1
            }
            other => return Err(WireError::UnknownKind(other)),
        };
        Ok(Some(wire::HEADER + n))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use pacer_qemu::stream::synth;
    use proptest::prelude::*;

    use super::*;
    use crate::Encoder;

    fn page(fill: u8) -> Vec<u8> {
        vec![fill; PAGE]
    }

    /// Decodes `wire` in chunks of `chunk` bytes: each stream's bytes and whether it closed cleanly.
    fn decode(wire: &[u8], chunk: usize) -> HashMap<u32, (Vec<u8>, Option<bool>)> {
        let mut d = Decoder::new();
        let mut out: HashMap<u32, (Vec<u8>, Option<bool>)> = HashMap::new();
        for c in wire.chunks(chunk.max(1)) {
            d.feed(c, |e| match e {
                Event::Open { stream, .. } => {
                    out.insert(stream, (Vec::new(), None));
                }
                Event::Data { stream, bytes } => out.get_mut(&stream).unwrap().0.extend_from_slice(bytes),
                Event::Close { stream, clean } => out.get_mut(&stream).unwrap().1 = Some(clean),
            })
            .unwrap();
        }
        out
    }

    /// Two VMs from one image: the same shared pages, some unique ones each.
    fn gang() -> (Vec<u8>, Vec<u8>) {
        let shared: Vec<(u64, Option<Vec<u8>>)> = (0..6).map(|i| (i, Some(page(10 + i as u8)))).collect();
        let mut a = shared.clone();
        a.push((6, Some(page(100))));
        a.push((7, None));
        let mut b = shared;
        b.push((6, Some(page(200))));
        (synth::stream(16, &[a.clone(), a]), synth::stream(16, &[b.clone(), b]))
    }

    #[test]
    fn a_gangs_streams_come_back_byte_for_byte_with_shared_pages_sent_once() {
        let (a, b) = gang();
        let mut e = Encoder::new(1024, true);
        let mut wire = Vec::new();
        e.preface(&mut wire);
        e.open(1, "vm-a", &mut wire);
        e.open(2, "vm-b", &mut wire);
        // Interleaved in odd-sized pieces, as two sockets would deliver them.
        let (mut ia, mut ib) = (0, 0);
        while ia < a.len() || ib < b.len() {
            let na = 777.min(a.len() - ia);
            e.feed(1, &a[ia..ia + na], &mut wire);
            ia += na;
            let nb = 5000.min(b.len() - ib);
            e.feed(2, &b[ib..ib + nb], &mut wire);
            ib += nb;
        }
        e.close(1, true, &mut wire);
        e.close(2, false, &mut wire);
        let out = decode(&wire, 333);
        assert_eq!(out[&1], (a.clone(), Some(true)));
        assert_eq!(out[&2], (b.clone(), Some(false)));
        let st = e.stats();
        // 7 distinct contents in a, 1 more in b; 2 rounds each: 14 + 14 pages.
        assert_eq!((st.pages, st.pages - st.refs), (28, 8));
        assert!(st.wire_bytes < (a.len() + b.len()) as u64 / 3, "{st:?}");
        // What predictions take a page and a reference to cost (the rest: preface,
        // OPEN/CLOSE, the streams' non-page bytes).
        let pages = 8 * wire::PAGE_COST + 20 * wire::REF_COST;
        assert!(st.wire_bytes >= pages && st.wire_bytes < pages + 1000, "{} vs {pages}", st.wire_bytes);
        assert_eq!(e.gave_up(1), None);
    }

    #[test]
    fn without_dedup_the_streams_go_as_they_are() {
        let (a, _) = gang();
        let mut e = Encoder::new(1024, false);
        let mut wire = Vec::new();
        e.preface(&mut wire);
        e.open(7, "vm", &mut wire);
        e.feed(7, &a, &mut wire);
        e.close(7, true, &mut wire);
        assert_eq!(decode(&wire, 4096)[&7].0, a);
        assert_eq!(e.stats().refs, 0);
        assert!(e.stats().wire_bytes < a.len() as u64 + 64);
    }

    #[test]
    fn bad_frames_are_errors_that_name_what_is_wrong() {
        let start = |cap: u32| {
            let mut e = Encoder::new(cap, true);
            let mut w = Vec::new();
            e.preface(&mut w);
            (e, w)
        };
        let (_, mut wire) = start(4);
        wire::header(&mut wire, wire::REF, 1);
        assert_eq!(Decoder::new().feed(&wire, |_| {}), Err(WireError::NotOpen(1)));
        let (mut e, mut wire) = start(4);
        e.open(1, "vm", &mut wire);
        wire::header(&mut wire, wire::REF, 1);
        wire.extend(3u32.to_be_bytes());
        assert_eq!(Decoder::new().feed(&wire, |_| {}), Err(WireError::EmptySlot(3)));
        let (_, mut wire) = start(4);
        wire.extend([9, 0, 0, 0, 1]);
        assert_eq!(Decoder::new().feed(&wire, |_| {}), Err(WireError::UnknownKind(9)));
        assert!(WireError::UnknownKind(9).to_string().contains("another version"));
        // Something else connected: a migration stream sent to the relay's port.
        assert_eq!(Decoder::new().feed(b"QEVM\0\0\0\x03", |_| {}), Err(WireError::NotRelay));
        let mut big = b"PACERLY1".to_vec();
        big.extend(u32::MAX.to_be_bytes());
        assert_eq!(Decoder::new().feed(&big, |_| {}), Err(WireError::TooBig(u32::MAX)));
    }

    proptest! {
        #[test]
        fn a_small_store_still_rebuilds_every_stream(
            fills in proptest::collection::vec(0u8..6, 1..40),
            capacity in 1u32..8,
            chunk in 1usize..6000,
        ) {
            // Few distinct contents and a store smaller than them: slots are
            // overwritten and references must follow.
            let round: Vec<(u64, Option<Vec<u8>>)> =
                fills.iter().enumerate().map(|(i, f)| (i as u64, Some(page(*f)))).collect();
            let s = synth::stream(64, &[round.clone(), round]);
            let mut e = Encoder::new(capacity, true);
            let mut wire = Vec::new();
            e.preface(&mut wire);
            e.open(1, "a", &mut wire);
            e.open(2, "b", &mut wire);
            for c in s.chunks(chunk) {
                e.feed(1, c, &mut wire);
                e.feed(2, c, &mut wire);
            }
            let out = decode(&wire, chunk);
            prop_assert_eq!(&out[&1].0, &s);
            prop_assert_eq!(&out[&2].0, &s);
        }
    }
}
