//! QEMU's main migration stream, tokenized for a relay: the RAM section's pages
//! are picked out, everything else passes through as bytes. Concatenating the
//! tokens' bytes in order gives back the input exactly, however it was split.
//!
//! Only plain pre-copy is understood (no multifd, no post-copy packages, no other
//! iterable sections, none of the RAM record kinds of older or newer QEMUs). On
//! anything else the tokenizer stops looking inside and passes the rest of the
//! stream through raw, saying why: the stream arrives intact, only not deduplicated.
//! Facts from QEMU 10.0's migration/ram.c and savevm.c (design notes: relay.md).

/// Size of a guest page in the stream (x86 target pages are always 4 KiB).
pub const PAGE: usize = 4096;

const MAGIC: u32 = 0x5145_564D;
const VERSION: u32 = 3;

// Section types (savevm.c).
const SEC_EOF: u8 = 0x00;
const SEC_START: u8 = 0x01;
const SEC_PART: u8 = 0x02;
const SEC_END: u8 = 0x03;
const SEC_FULL: u8 = 0x04;
const SEC_SUBSECTION: u8 = 0x05;
const SEC_CONFIGURATION: u8 = 0x07;
const SEC_COMMAND: u8 = 0x08;
const SEC_FOOTER: u8 = 0x7e;
/// The post-copy command that nests a whole stream (device state) in one blob.
const CMD_PACKAGED: u16 = 8;

// RAM record flags (ram.c), in the low 12 bits of the record's first be64.
const RAM_ZERO: u64 = 0x02;
const RAM_MEM_SIZE: u64 = 0x04;
const RAM_PAGE: u64 = 0x08;
const RAM_EOS: u64 = 0x10;
const RAM_CONTINUE: u64 = 0x20;
const RAM_XBZRLE: u64 = 0x40;
const RAM_FLAGS: u64 = 0xfff;
const RAM_KNOWN: u64 = RAM_ZERO | RAM_MEM_SIZE | RAM_PAGE | RAM_EOS | RAM_CONTINUE | RAM_XBZRLE;

/// A piece of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// Bytes to forward as they are (headers, record headers, zero records, device
    /// state, and everything once the tokenizer stopped looking inside).
    Raw(&'a [u8]),
    /// The contents of one guest page (its record header came just before as raw).
    Page {
        /// Index of its RAM block in the order the stream listed them.
        block: u16,
        /// Byte offset in that block.
        offset: u64,
        /// The page, [`PAGE`] bytes.
        data: &'a [u8],
    },
}

/// Counts of what went by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Bytes in.
    pub bytes: u64,
    /// Page records (each [`PAGE`] bytes of content).
    pub pages: u64,
    /// Zero-page records.
    pub zero_pages: u64,
    /// RAM rounds (PART or END sections of the RAM section).
    pub ram_sections: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Top,
    /// After the configuration section: its subsections, if any.
    Config,
    /// Inside the RAM section's body (`end`: its END section).
    Ram { end: bool },
    /// From RAM's END on: device state, forwarded as it is.
    Tail,
    /// Not understood: forwarded as it is.
    Raw,
}

/// Tokenizes one VM's main migration stream as it arrives.
#[derive(Debug)]
pub struct Tokenizer {
    buf: Vec<u8>,
    state: State,
    ram_id: Option<u32>,
    /// RAM blocks (names) in the order the RAM START section listed them.
    blocks: Vec<String>,
    /// The block records without CONTINUE named last (carries across sections).
    last_block: Option<u16>,
    gave_up: Option<String>,
    stats: StreamStats,
}

impl Default for Tokenizer {
    fn default() -> Self {
        Tokenizer::new()
    }
}

/// What parsing one item found.
enum Step {
    /// The first `n` bytes are one item; go on.
    Item(usize),
    /// A page record: `header` bytes of record header, then the page.
    Page { header: usize, block: u16, offset: u64 },
    /// More bytes are needed.
    Short,
    /// Not understood: pass the rest through.
    GiveUp(String),
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}
fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes(s.try_into().unwrap()))
}
fn be64(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| u64::from_be_bytes(s.try_into().unwrap()))
}
/// A u8-length-prefixed string at `at`: (string, bytes taken).
fn name(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let n = *b.get(at)? as usize;
    b.get(at + 1..at + 1 + n).map(|s| (s, 1 + n))
}

macro_rules! need {
    ($e:expr) => {
        match $e {
            Some(v) => v,
            None => return Step::Short,
        }
    };
}

impl Tokenizer {
    /// A tokenizer at the start of a stream.
    pub fn new() -> Tokenizer {
        Tokenizer {
            buf: Vec::new(),
            state: State::Header,
            ram_id: None,
            blocks: Vec::new(),
            last_block: None,
            gave_up: None,
            stats: StreamStats::default(),
        }
    }

    /// Why the tokenizer stopped looking inside the stream, if it did.
    pub fn gave_up(&self) -> Option<&str> {
        self.gave_up.as_deref()
    }

    /// Whether RAM's END section went by (the rest is device state).
    pub fn ram_done(&self) -> bool {
        self.state == State::Tail
    }

    /// Counts so far.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// The RAM blocks the stream listed.
    pub fn blocks(&self) -> &[String] {
        &self.blocks
    }

    /// Takes the next bytes of the stream; hands every complete token to `sink`,
    /// in order. Bytes of an item not yet complete are kept for the next call.
    pub fn feed(&mut self, data: &[u8], mut sink: impl FnMut(Token<'_>)) {
        self.stats.bytes += data.len() as u64;
        if matches!(self.state, State::Tail | State::Raw) && self.buf.is_empty() {
            if !data.is_empty() {
                sink(Token::Raw(data));
            }
            return;
        }
        self.buf.extend_from_slice(data);
        let buf = std::mem::take(&mut self.buf);
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            if rest.is_empty() {
                break;
            }
            if matches!(self.state, State::Tail | State::Raw) {
                sink(Token::Raw(rest));
                pos = buf.len();
                break;
            }
            match self.step(rest) {
                Step::Item(n) => {
                    sink(Token::Raw(&rest[..n]));
                    pos += n;
                }
                Step::Page { header, block, offset } => {
                    sink(Token::Raw(&rest[..header]));
                    sink(Token::Page { block, offset, data: &rest[header..header + PAGE] });
                    self.stats.pages += 1;
                    pos += header + PAGE;
                }
                Step::Short => break,
                Step::GiveUp(why) => {
                    self.gave_up = Some(why);
                    self.state = State::Raw;
                }
            }
        }
        // Keep what is left (an incomplete item) for the next call.
        let mut buf = buf;
        buf.drain(..pos);
        self.buf = buf;
    }

    /// Parses one item at the start of `b` in the current state.
    fn step(&mut self, b: &[u8]) -> Step {
        match self.state {
            State::Header => {
                let (magic, version) = (need!(be32(b, 0)), need!(be32(b, 4)));
                if magic != MAGIC || version != VERSION {
                    return Step::GiveUp(format!("not a QEMU migration stream (magic {magic:#x}, version {version})"));
                }
                self.state = State::Top;
                Step::Item(8)
            }
            State::Config => {
                if b[0] != SEC_SUBSECTION {
                    self.state = State::Top;
                    return self.step(b);
                }
                let (sub, n) = need!(name(b, 1));
                let body = 1 + n + 4;
                match sub {
                    b"configuration/capabilities" => {
                        let count = need!(be32(b, body)) as usize;
                        let mut at = body + 4;
                        for _ in 0..count {
                            let (cap, n) = need!(name(b, at));
                            if cap == b"x-ignore-shared" || cap == b"mapped-ram" {
                                return Step::GiveUp(format!(
                                    "capability {} changes the RAM records",
                                    String::from_utf8_lossy(cap)
                                ));
                            }
                            at += n;
                        }
                        Step::Item(at)
                    }
                    b"configuration/target-page-bits" => {
                        let bits = need!(be32(b, body));
                        if bits != 12 {
                            return Step::GiveUp(format!("target pages of 2^{bits} bytes"));
                        }
                        Step::Item(body + 4)
                    }
                    b"configuration/uuid" => {
                        need!(b.get(..body + 16));
                        Step::Item(body + 16)
                    }
                    other => Step::GiveUp(format!(
                        "unknown configuration subsection {}",
                        String::from_utf8_lossy(other)
                    )),
                }
            }
            State::Top => self.top(b),
            State::Ram { end } => self.ram_record(b, end),
            State::Tail | State::Raw => unreachable!("raw states are forwarded without parsing"),
        }
    }

    fn top(&mut self, b: &[u8]) -> Step {
        match b[0] {
            SEC_CONFIGURATION => {
                let len = need!(be32(b, 1)) as usize;
                need!(b.get(..5 + len));
                self.state = State::Config;
                Step::Item(5 + len)
            }
            SEC_COMMAND => {
                let (cmd, len) = (need!(be16(b, 1)), need!(be16(b, 3)) as usize);
                if cmd == CMD_PACKAGED {
                    return Step::GiveUp("a post-copy package (device state nested in the stream)".into());
                }
                need!(b.get(..5 + len));
                Step::Item(5 + len)
            }
            t @ (SEC_START | SEC_FULL) => {
                let id = need!(be32(b, 1));
                let (idstr, n) = need!(name(b, 5));
                let header = 5 + n + 8;
                need!(b.get(..header));
                if t == SEC_START && idstr == b"ram" && self.ram_id.is_none() {
                    self.ram_id = Some(id);
                    self.state = State::Ram { end: false };
                    return Step::Item(header);
                }
                Step::GiveUp(format!(
                    "section {} before RAM's end (another iterable section)",
                    String::from_utf8_lossy(idstr)
                ))
            }
            t @ (SEC_PART | SEC_END) => {
                let id = need!(be32(b, 1));
                if Some(id) != self.ram_id {
                    return Step::GiveUp(format!("a part of section {id}, not RAM's"));
                }
                self.stats.ram_sections += 1;
                self.state = State::Ram { end: t == SEC_END };
                Step::Item(5)
            }
            SEC_EOF => {
                self.state = State::Tail;
                Step::Item(1)
            }
            other => Step::GiveUp(format!("unknown section type {other:#04x}")),
        }
    }

    /// One record of the RAM section's body.
    fn ram_record(&mut self, b: &[u8], end: bool) -> Step {
        let h = need!(be64(b, 0));
        let (flags, addr) = (h & RAM_FLAGS, h & !RAM_FLAGS);
        if flags & !RAM_KNOWN != 0 {
            return Step::GiveUp(format!("RAM record flags {flags:#x} (multifd, RDMA or another QEMU's)"));
        }
        if flags == RAM_EOS {
            // The section's footer follows.
            let f = need!(b.get(8));
            if *f != SEC_FOOTER {
                return Step::GiveUp("a RAM section without a footer".into());
            }
            need!(be32(b, 9));
            self.state = if end { State::Tail } else { State::Top };
            return Step::Item(13);
        }
        if flags == RAM_MEM_SIZE {
            // The block list: names and lengths until they add up to the total.
            let mut at = 8;
            let mut sum = 0u64;
            let mut names = Vec::new();
            while sum < addr {
                let (n, k) = need!(name(b, at));
                let len = need!(be64(b, at + k));
                names.push(String::from_utf8_lossy(n).into_owned());
                sum += len;
                at += k + 8;
            }
            if sum != addr || names.len() > u16::MAX as usize {
                return Step::GiveUp("RAM block lengths that do not add up to the total".into());
            }
            self.blocks = names;
            return Step::Item(at);
        }
        let mut at = 8;
        if flags & RAM_CONTINUE == 0 {
            let (n, k) = need!(name(b, at));
            match self.blocks.iter().position(|x| x.as_bytes() == n) {
                Some(i) => self.last_block = Some(i as u16),
                None => return Step::GiveUp(format!("RAM block {} not listed", String::from_utf8_lossy(n))),
            }
            at += k;
        }
        let Some(block) = self.last_block else {
            return Step::GiveUp("a RAM record continuing no block".into());
        };
        match flags & !RAM_CONTINUE {
            RAM_ZERO => {
                need!(b.get(at));
                self.stats.zero_pages += 1;
                Step::Item(at + 1)
            }
            RAM_PAGE => {
                need!(b.get(..at + PAGE));
                Step::Page { header: at, block, offset: addr }
            }
            RAM_XBZRLE => {
                let len = need!(be16(b, at + 1)) as usize;
                need!(b.get(..at + 3 + len));
                Step::Item(at + 3 + len)
            }
            other => Step::GiveUp(format!("RAM record flags {other:#x} where a page was expected")),
        }
    }
}

/// Builders of synthetic streams, for tests of the tokenizer and of what uses it.
pub mod synth {
    use super::*;

    /// One round: (page number, its contents; None for a zero page) in order.
    pub type Round = Vec<(u64, Option<Vec<u8>>)>;

    /// A stream in the shape QEMU 10.0 writes for plain pre-copy: header,
    /// configuration with capabilities and uuid, RAM START with one block, one
    /// PART per entry of `rounds` (each a list of (page number, contents: None for
    /// a zero page)), RAM END, a device section and EOF.
    pub fn stream(ram_pages: u64, rounds: &[Round]) -> Vec<u8> {
        let mut s = Vec::new();
        s.extend(MAGIC.to_be_bytes());
        s.extend(VERSION.to_be_bytes());
        let machine = b"pc-q35-10.0";
        s.push(SEC_CONFIGURATION);
        s.extend((machine.len() as u32).to_be_bytes());
        s.extend(machine);
        sub(&mut s, b"configuration/capabilities", &[0, 0, 0, 0]);
        sub(&mut s, b"configuration/uuid", &[7u8; 16]);
        s.extend([SEC_COMMAND, 0, 2, 0, 4, 0, 0, 0, 1]); // PING 1
        s.push(SEC_START);
        s.extend(2u32.to_be_bytes());
        put_name(&mut s, b"ram");
        s.extend(0u32.to_be_bytes());
        s.extend(4u32.to_be_bytes());
        let total = ram_pages * PAGE as u64;
        s.extend((total | RAM_MEM_SIZE).to_be_bytes());
        put_name(&mut s, b"pc.ram");
        s.extend(total.to_be_bytes());
        eos(&mut s, 2);
        for (i, round) in rounds.iter().enumerate() {
            if i + 1 == rounds.len() {
                s.extend([SEC_COMMAND, 0, 0x0b, 0, 0]); // SWITCHOVER_START
            }
            s.push(if i + 1 == rounds.len() { SEC_END } else { SEC_PART });
            s.extend(2u32.to_be_bytes());
            for (j, (page, content)) in round.iter().enumerate() {
                let cont = if j == 0 { 0 } else { RAM_CONTINUE };
                let flags = if content.is_some() { RAM_PAGE } else { RAM_ZERO };
                s.extend(((page * PAGE as u64) | flags | cont).to_be_bytes());
                if j == 0 {
                    put_name(&mut s, b"pc.ram");
                }
                match content {
                    Some(c) => s.extend(c),
                    None => s.push(0),
                }
            }
            eos(&mut s, 2);
        }
        // A device section (opaque), EOF, then the JSON description.
        s.push(SEC_FULL);
        s.extend(3u32.to_be_bytes());
        put_name(&mut s, b"timer");
        s.extend([0, 0, 0, 0, 0, 0, 0, 2, 1, 2, 3, 4, SEC_FOOTER, 0, 0, 0, 3]);
        s.push(SEC_EOF);
        s.extend([0x06, 0, 0, 0, 2, b'{', b'}']);
        s
    }

    fn put_name(s: &mut Vec<u8>, n: &[u8]) {
        s.push(n.len() as u8);
        s.extend(n);
    }

    fn sub(s: &mut Vec<u8>, n: &[u8], body: &[u8]) {
        s.push(SEC_SUBSECTION);
        put_name(s, n);
        s.extend(1u32.to_be_bytes());
        s.extend(body);
    }

    fn eos(s: &mut Vec<u8>, id: u32) {
        s.extend(RAM_EOS.to_be_bytes());
        s.push(SEC_FOOTER);
        s.extend(id.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn page(fill: u8) -> Vec<u8> {
        vec![fill; PAGE]
    }

    /// Tokens of `s` fed in chunks of the given sizes (cycled): raw bytes and pages.
    type Pages = Vec<(u16, u64, Vec<u8>)>;

    fn run(s: &[u8], chunks: &[usize]) -> (Vec<u8>, Pages, Tokenizer) {
        let mut t = Tokenizer::new();
        let (mut out, mut pages) = (Vec::new(), Vec::new());
        let mut at = 0;
        let mut i = 0;
        while at < s.len() {
            let n = chunks[i % chunks.len()].max(1).min(s.len() - at);
            t.feed(&s[at..at + n], |tok| match tok {
                Token::Raw(b) => out.extend(b),
                Token::Page { block, offset, data } => {
                    out.extend(data);
                    pages.push((block, offset, data.to_vec()));
                }
            });
            at += n;
            i += 1;
        }
        (out, pages, t)
    }

    #[test]
    fn pages_are_picked_out_and_the_bytes_come_back_whole() {
        let rounds = vec![
            vec![(0, Some(page(1))), (1, None), (2, Some(page(2)))],
            vec![(2, Some(page(3)))],
            vec![(5, Some(page(4))), (6, None)],
        ];
        let s = synth::stream(8, &rounds);
        let (out, pages, t) = run(&s, &[s.len()]);
        assert_eq!(out, s);
        assert_eq!(t.gave_up(), None);
        assert!(t.ram_done());
        assert_eq!(t.blocks(), ["pc.ram"]);
        let got: Vec<(u64, u8)> = pages.iter().map(|(_, o, d)| (*o, d[0])).collect();
        assert_eq!(got, [(0, 1), (2 * 4096, 2), (2 * 4096, 3), (5 * 4096, 4)]);
        let st = t.stats();
        assert_eq!((st.pages, st.zero_pages, st.ram_sections), (4, 2, 3));
    }

    #[test]
    fn what_it_does_not_understand_goes_through_raw_and_says_why() {
        let s = synth::stream(4, &[vec![(0, Some(page(1)))], vec![(1, Some(page(2)))]]);
        // A multifd flush flag in the first round's record.
        let mut bad = s.clone();
        let at = s.windows(6).position(|w| w == [0x06, b'p', b'c', b'.', b'r', b'a']).unwrap();
        // The first match is the block list; the next is the first record's name.
        let rec = s[at + 1..].windows(6).position(|w| w == [0x06, b'p', b'c', b'.', b'r', b'a']).unwrap() + at + 1;
        bad[rec - 2] |= 0x02; // 0x200 in the record's flags
        let (out, pages, t) = run(&bad, &[7, 4096, 3]);
        assert_eq!(out, bad);
        assert!(pages.is_empty());
        assert!(t.gave_up().unwrap().contains("multifd"), "{:?}", t.gave_up());
        // Not a stream at all.
        let (out, _, t) = run(b"GET / HTTP/1.1\r\n", &[5]);
        assert_eq!(out, b"GET / HTTP/1.1\r\n");
        assert!(t.gave_up().unwrap().contains("not a QEMU migration stream"));
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_tokens(
            chunks in proptest::collection::vec(1usize..9000, 1..8),
            contents in proptest::collection::vec(proptest::option::of(any::<u8>()), 1..20),
        ) {
            let round: Vec<(u64, Option<Vec<u8>>)> =
                contents.iter().enumerate().map(|(i, c)| (i as u64, c.map(page))).collect();
            let s = synth::stream(32, &[round.clone(), round]);
            let (whole, pages_whole, _) = run(&s, &[s.len()]);
            let (out, pages, t) = run(&s, &chunks);
            prop_assert_eq!(&out, &s);
            prop_assert_eq!(&whole, &s);
            prop_assert_eq!(pages, pages_whole);
            prop_assert_eq!(t.gave_up(), None);
            prop_assert_eq!(t.stats().pages as usize, 2 * contents.iter().filter(|c| c.is_some()).count());
        }
    }
}
