//! Minimal JSON object writer (no dependencies).

use std::fmt::Write;

/// Builds one JSON object, field by field.
pub struct Obj {
    buf: String,
    first: bool,
}

impl Obj {
    pub fn new(kind: &str) -> Self {
        let mut o = Obj {
            buf: String::with_capacity(160),
            first: true,
        };
        o.buf.push('{');
        o.str("kind", kind);
        o
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.buf.push(',');
        }
        self.first = false;
        push_str(&mut self.buf, k);
        self.buf.push(':');
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        push_str(&mut self.buf, v);
        self
    }

    pub fn u64(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k);
        let _ = write!(self.buf, "{v}");
        self
    }

    /// Finite floats as plain decimals; non-finite as null.
    pub fn f64(&mut self, k: &str, v: f64) -> &mut Self {
        self.key(k);
        if v.is_finite() {
            let _ = write!(self.buf, "{v}");
        } else {
            self.buf.push_str("null");
        }
        self
    }

    /// A float rounded to 2 decimals.
    pub fn f64_2(&mut self, k: &str, v: f64) -> &mut Self {
        self.f64(k, (v * 100.0).round() / 100.0)
    }

    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k);
        self.buf.push_str(if v { "true" } else { "false" });
        self
    }

    pub fn u64_list(&mut self, k: &str, v: &[u64]) -> &mut Self {
        self.key(k);
        self.buf.push('[');
        for (i, x) in v.iter().enumerate() {
            if i > 0 {
                self.buf.push(',');
            }
            let _ = write!(self.buf, "{x}");
        }
        self.buf.push(']');
        self
    }

    pub fn finish(&mut self) -> String {
        let mut s = std::mem::take(&mut self.buf);
        s.push('}');
        s
    }
}

fn push_str(buf: &mut String, s: &str) {
    buf.push('"');
    for c in s.chars() {
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            '\t' => buf.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(buf, "\\u{:04x}", c as u32);
            }
            c => buf.push(c),
        }
    }
    buf.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object() {
        let s = Obj::new("verify")
            .u64("seq", 1)
            .bool("ok", true)
            .u64_list("first_bad", &[1, 2])
            .f64("hot", 0.1)
            .f64_2("mbps", 59.996)
            .str("message", "a \"b\"\\\n\u{1}")
            .finish();
        assert_eq!(
            s,
            r#"{"kind":"verify","seq":1,"ok":true,"first_bad":[1,2],"hot":0.1,"mbps":60,"message":"a \"b\"\\\n\u0001"}"#
        );
    }
}
