//! A tiny client for redis (RESP) and memcached (text protocol) over
//! loopback: the load generator of the key-value applications. Values are a
//! pure function of (key index, generation), so what the server returns can
//! be checked against what was written, like the guest's own pages.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Bytes of each value: with redis's and memcached's headers an item takes
/// one 4 KiB-ish allocation, so a set rewrites about one page.
pub const VALUE_LEN: usize = 4000;

/// Which server speaks which protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Redis,
    Memcached,
}

impl Proto {
    pub fn key(self, i: u64) -> String {
        match self {
            Proto::Redis => format!("pacer:{i}"),
            Proto::Memcached => format!("pacer_{i}"),
        }
    }
}

/// The value of key `i` at generation `gen`: a header naming both, then
/// words derived from them (printable, so a dump of a bad value reads).
pub fn value(i: u64, gen: u32, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(format!("{i}:{gen}:").as_bytes());
    let mut x =
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (gen as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    while out.len() < VALUE_LEN {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        for k in 0..16 {
            if out.len() == VALUE_LEN {
                break;
            }
            out.push(HEX[((z >> (k * 4)) & 15) as usize]);
        }
    }
}

/// One connection to the server.
pub struct Client {
    proto: Proto,
    w: TcpStream,
    r: BufReader<TcpStream>,
    buf: Vec<u8>,
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Client {
    /// Connects to `127.0.0.1:port`, retrying until `timeout` (the server
    /// may still be starting).
    pub fn connect(proto: Proto, port: u16, timeout: Duration) -> io::Result<Client> {
        let until = Instant::now() + timeout;
        loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    s.set_read_timeout(Some(Duration::from_secs(20)))?;
                    let r = BufReader::with_capacity(64 << 10, s.try_clone()?);
                    return Ok(Client {
                        proto,
                        w: s,
                        r,
                        buf: Vec::with_capacity(64 << 10),
                    });
                }
                Err(e) if Instant::now() >= until => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Queues a set of `key` to `val` (sent by [`Client::flush`]).
    pub fn queue_set(&mut self, key: &str, val: &[u8]) {
        match self.proto {
            Proto::Redis => {
                self.buf.extend_from_slice(
                    format!(
                        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n",
                        key.len(),
                        val.len()
                    )
                    .as_bytes(),
                );
            }
            Proto::Memcached => {
                self.buf
                    .extend_from_slice(format!("set {key} 0 0 {}\r\n", val.len()).as_bytes());
            }
        }
        self.buf.extend_from_slice(val);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// Sends what is queued.
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    fn line(&mut self) -> io::Result<String> {
        let mut l = String::new();
        if self.r.read_line(&mut l)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        Ok(l.trim_end().to_string())
    }

    /// Reads the answer to one queued set.
    pub fn set_reply(&mut self) -> io::Result<()> {
        let l = self.line()?;
        let want = match self.proto {
            Proto::Redis => "+OK",
            Proto::Memcached => "STORED",
        };
        if l == want {
            Ok(())
        } else {
            Err(bad(format!("set answered {l:?}, expected {want:?}")))
        }
    }

    /// The value of `key`, or None if the server has none.
    pub fn get(&mut self, key: &str) -> io::Result<Option<Vec<u8>>> {
        match self.proto {
            Proto::Redis => self.buf.extend_from_slice(
                format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes(),
            ),
            Proto::Memcached => self
                .buf
                .extend_from_slice(format!("get {key}\r\n").as_bytes()),
        }
        self.flush()?;
        let l = self.line()?;
        let len = match self.proto {
            Proto::Redis if l == "$-1" => return Ok(None),
            Proto::Redis => l.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()),
            Proto::Memcached if l == "END" => return Ok(None),
            Proto::Memcached => l
                .strip_prefix("VALUE ")
                .and_then(|r| r.split_whitespace().nth(2))
                .and_then(|n| n.parse::<usize>().ok()),
        }
        .ok_or_else(|| bad(format!("get {key} answered {l:?}")))?;
        let mut data = vec![0u8; len + 2];
        self.r.read_exact(&mut data)?;
        data.truncate(len);
        if self.proto == Proto::Memcached {
            let end = self.line()?;
            if end != "END" {
                return Err(bad(format!(
                    "get {key}: {end:?} after the value, expected END"
                )));
            }
        }
        Ok(Some(data))
    }

    /// Whether the server answers (redis PING, memcached version).
    pub fn ping(&mut self) -> io::Result<()> {
        let (cmd, want): (&[u8], &str) = match self.proto {
            Proto::Redis => (b"*1\r\n$4\r\nPING\r\n", "+PONG"),
            Proto::Memcached => (b"version\r\n", "VERSION"),
        };
        self.buf.extend_from_slice(cmd);
        self.flush()?;
        let l = self.line()?;
        if l.starts_with(want) {
            Ok(())
        } else {
            Err(bad(format!("ping answered {l:?}, expected {want:?}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn values_are_a_function_of_key_and_generation() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        value(7, 2, &mut a);
        value(7, 2, &mut b);
        assert_eq!(a, b);
        assert_eq!(a.len(), VALUE_LEN);
        assert!(a.starts_with(b"7:2:"));
        value(7, 3, &mut b);
        assert_ne!(a, b);
        assert!(a.iter().all(|c| c.is_ascii_graphic()));
    }

    /// The client against a scripted server: the bytes it sends, and the
    /// answers it reads, for both protocols.
    #[test]
    fn wire_format() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut got = vec![0u8; 4096];
            let mut all = Vec::new();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            s.write_all(b"+OK\r\n$3\r\nabc\r\n$-1\r\n+PONG\r\n")
                .unwrap();
            while let Ok(n) = s.read(&mut got) {
                if n == 0 {
                    break;
                }
                all.extend_from_slice(&got[..n]);
            }
            all
        });
        let mut c = Client::connect(Proto::Redis, port, Duration::from_secs(5)).unwrap();
        c.queue_set("k", b"vv");
        c.flush().unwrap();
        c.set_reply().unwrap();
        assert_eq!(c.get("k").unwrap(), Some(b"abc".to_vec()));
        assert_eq!(c.get("x").unwrap(), None);
        c.ping().unwrap();
        drop(c);
        let sent = String::from_utf8(server.join().unwrap()).unwrap();
        assert_eq!(
            sent,
            "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\nvv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n\
             *2\r\n$3\r\nGET\r\n$1\r\nx\r\n*1\r\n$4\r\nPING\r\n"
        );

        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"STORED\r\nVALUE pacer_1 0 2\r\nhi\r\nEND\r\nEND\r\nVERSION 1.6.18\r\n")
                .unwrap();
            let mut all = String::new();
            let _ = s.read_to_string(&mut all);
            all
        });
        let mut c = Client::connect(Proto::Memcached, port, Duration::from_secs(5)).unwrap();
        c.queue_set(&Proto::Memcached.key(1), b"hi");
        c.flush().unwrap();
        c.set_reply().unwrap();
        assert_eq!(c.get("pacer_1").unwrap(), Some(b"hi".to_vec()));
        assert_eq!(c.get("pacer_2").unwrap(), None);
        c.ping().unwrap();
        drop(c);
        assert_eq!(
            server.join().unwrap(),
            "set pacer_1 0 0 2\r\nhi\r\nget pacer_1\r\nget pacer_2\r\nversion\r\n"
        );
    }
}
