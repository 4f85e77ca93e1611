//! Common Media Client Data (CTA-5004, and the inner lists of CTA-5004-B)
//! as players send it with each request: the `CMCD` query parameter or the
//! `CMCD-Request`, `CMCD-Object`, `CMCD-Status` and `CMCD-Session` headers,
//! each a Structured Field dictionary (RFC 8941).
//!
//! hls.js and dash.js both encode it with `@svta/cml-cmcd`: keys sorted,
//! no whitespace, `true` as a bare key (`bs`, `su`), tokens bare (`ot=v`),
//! strings quoted (`sid="…"`), and in version 2 some numbers as inner lists
//! (`br=(2500)`); as a query parameter the whole dictionary is
//! percent-encoded once more.
//!
//! Parsing never fails: CMCD is advisory, so a malformed member, an unknown
//! key or an out-of-range value is skipped, and a field longer than
//! [`MAX_FIELD_BYTES`] is ignored whole. Nothing here rejects a request.

use http::HeaderMap;
use percent_encoding::percent_decode_str;

/// A CMCD header or query value longer than this is ignored (players send
/// a few hundred bytes).
pub const MAX_FIELD_BYTES: usize = 2048;
/// Dictionary members read per field at most.
pub const MAX_MEMBERS: usize = 64;
/// Longest session or content id kept; longer ones are dropped.
pub const MAX_ID_BYTES: usize = 128;
/// Largest number kept (RFC 8941 integers have at most 15 digits).
const MAX_NUMBER: u64 = 999_999_999_999_999;

/// The header fields CMCD may arrive in (CTA-5004 §2.2).
pub const HEADER_NAMES: [&str; 4] = ["cmcd-request", "cmcd-object", "cmcd-status", "cmcd-session"];

/// The CMCD keys a server can use to judge a viewer's network; all optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cmcd {
    /// `bl`: buffer length, milliseconds.
    pub buffer_length_ms: Option<u64>,
    /// `mtp`: throughput the player measured, kbit/s.
    pub measured_throughput_kbps: Option<u64>,
    /// `br`: encoded bitrate of the object requested, kbit/s.
    pub encoded_bitrate_kbps: Option<u64>,
    /// `tb`: top bitrate the player may play, kbit/s.
    pub top_bitrate_kbps: Option<u64>,
    /// `rtp`: the throughput the player asks to be delivered at, kbit/s.
    pub requested_throughput_kbps: Option<u64>,
    /// `d`: object duration, milliseconds.
    pub object_duration_ms: Option<u64>,
    /// `dl`: deadline, milliseconds until the buffer runs dry.
    pub deadline_ms: Option<u64>,
    /// `bs`: the buffer ran dry since the last request.
    pub buffer_starvation: bool,
    /// `su`: the object is needed urgently (startup, seek, recovery).
    pub startup: bool,
    /// `sid`: the playback session.
    pub session_id: Option<String>,
    /// `cid`: the content.
    pub content_id: Option<String>,
    /// `ot`: object type (`m` manifest, `a` audio, `v` video, `av`, `i`
    /// init, `c` caption, `tt`, `k` key, `o` other).
    pub object_type: Option<String>,
    /// `sf`: streaming format (`h` HLS, `d` DASH, `s`, `o`).
    pub streaming_format: Option<String>,
    /// `pr`: playback rate (1 is not sent).
    pub playback_rate: Option<f64>,
    /// `v`: CMCD version (absent means 1).
    pub version: Option<u64>,
}

impl Cmcd {
    /// The CMCD of a request: the `CMCD` query parameter and the four
    /// headers merged (a key in a later source replaces an earlier one).
    pub fn from_request(query: Option<&str>, headers: &HeaderMap) -> Cmcd {
        let mut cmcd = Cmcd::default();
        if let Some(query) = query {
            for pair in query.split('&') {
                if let Some(value) = pair.strip_prefix("CMCD=")
                    && value.len() <= 3 * MAX_FIELD_BYTES
                    && let Ok(decoded) = percent_decode_str(value).decode_utf8()
                {
                    cmcd.merge_field(&decoded);
                }
            }
        }
        for name in HEADER_NAMES {
            for value in headers.get_all(name) {
                if let Ok(text) = value.to_str() {
                    cmcd.merge_field(text);
                }
            }
        }
        cmcd
    }

    /// Whether the request carried any key this type keeps.
    pub fn is_empty(&self) -> bool {
        *self == Cmcd::default()
    }

    /// Reads one dictionary, keeping what is well formed.
    pub fn merge_field(&mut self, field: &str) {
        if field.len() > MAX_FIELD_BYTES {
            return;
        }
        let mut parser = Parser {
            bytes: field.as_bytes(),
            at: 0,
        };
        for _ in 0..MAX_MEMBERS {
            parser.skip_spaces();
            if parser.at >= parser.bytes.len() {
                return;
            }
            match parser.member() {
                Some((key, value)) => self.set(key, value),
                None => parser.skip_member(),
            }
            parser.skip_spaces();
            if parser.peek() == Some(b',') {
                parser.at += 1;
            }
        }
    }

    fn set(&mut self, key: &str, value: Value) {
        let number = || match value {
            Value::Integer(n) if (0..=MAX_NUMBER as i64).contains(&n) => Some(n as u64),
            _ => None,
        };
        let text = |limit: usize| match &value {
            Value::Text(text) if text.len() <= limit => Some(text.clone()),
            _ => None,
        };
        let flag = || matches!(value, Value::Boolean(true));
        match key {
            "bl" => self.buffer_length_ms = number(),
            "mtp" => self.measured_throughput_kbps = number(),
            "br" => self.encoded_bitrate_kbps = number(),
            "tb" => self.top_bitrate_kbps = number(),
            "rtp" => self.requested_throughput_kbps = number(),
            "d" => self.object_duration_ms = number(),
            "dl" => self.deadline_ms = number(),
            "v" => self.version = number(),
            "bs" => self.buffer_starvation = flag(),
            "su" => self.startup = flag(),
            "sid" => self.session_id = text(MAX_ID_BYTES),
            "cid" => self.content_id = text(MAX_ID_BYTES),
            "ot" => self.object_type = text(4),
            "sf" => self.streaming_format = text(4),
            "pr" => {
                self.playback_rate = match value {
                    Value::Decimal(rate) if (0.0..=100.0).contains(&rate) => Some(rate),
                    Value::Integer(rate) if (0..=100).contains(&rate) => Some(rate as f64),
                    _ => None,
                }
            }
            _ => {}
        }
    }
}

/// A member's value, inner lists reduced to their first item (CTA-5004-B
/// sends one item per list for the keys read here).
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Integer(i64),
    Decimal(f64),
    /// A string or a token.
    Text(String),
    Boolean(bool),
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// RFC 8941 §3.2: `key [ "=" member-value ] parameters`, a bare key
    /// being `true`.
    fn member(&mut self) -> Option<(&'a str, Value)> {
        let key = self.key()?;
        let value = if self.peek() == Some(b'=') {
            self.at += 1;
            if self.peek() == Some(b'(') {
                self.inner_list()?
            } else {
                self.item()?
            }
        } else {
            Value::Boolean(true)
        };
        self.parameters()?;
        match self.peek() {
            None | Some(b',' | b' ' | b'\t') => Some((key, value)),
            Some(_) => None,
        }
    }

    fn key(&mut self) -> Option<&'a str> {
        let start = self.at;
        match self.peek() {
            Some(b'a'..=b'z' | b'*') => self.at += 1,
            _ => return None,
        }
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')
        ) {
            self.at += 1;
        }
        std::str::from_utf8(&self.bytes[start..self.at]).ok()
    }

    fn inner_list(&mut self) -> Option<Value> {
        self.at += 1;
        let mut first = None;
        loop {
            while self.peek() == Some(b' ') {
                self.at += 1;
            }
            if self.peek() == Some(b')') {
                self.at += 1;
                return first;
            }
            let item = self.item()?;
            self.parameters()?;
            first.get_or_insert(item);
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return None;
            }
        }
    }

    fn item(&mut self) -> Option<Value> {
        match self.peek()? {
            b'"' => self.string(),
            b'?' => {
                let value = match self.bytes.get(self.at + 1)? {
                    b'1' => true,
                    b'0' => false,
                    _ => return None,
                };
                self.at += 2;
                Some(Value::Boolean(value))
            }
            b'-' | b'0'..=b'9' => self.number(),
            b'a'..=b'z' | b'A'..=b'Z' | b'*' => {
                let start = self.at;
                while matches!(self.peek(), Some(c) if c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c))
                {
                    self.at += 1;
                }
                let token = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
                Some(Value::Text(token.to_owned()))
            }
            _ => None,
        }
    }

    fn string(&mut self) -> Option<Value> {
        self.at += 1;
        let mut text = String::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.at += 1;
                    return Some(Value::Text(text));
                }
                b'\\' => {
                    let escaped = *self.bytes.get(self.at + 1)?;
                    if escaped != b'"' && escaped != b'\\' {
                        return None;
                    }
                    text.push(escaped as char);
                    self.at += 2;
                }
                c @ 0x20..=0x7e => {
                    text.push(c as char);
                    self.at += 1;
                }
                _ => return None,
            }
        }
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        while matches!(self.peek(), Some(b'0'..=b'9' | b'.')) {
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.bytes[start..self.at]).ok()?;
        // RFC 8941: at most 15 integer digits, 12 before and 3 after a point.
        if text.len() > 16 {
            return None;
        }
        if text.contains('.') {
            text.parse().ok().map(Value::Decimal)
        } else {
            text.parse().ok().map(Value::Integer)
        }
    }

    /// Skips `;key[=item]` parameters.
    fn parameters(&mut self) -> Option<()> {
        while self.peek() == Some(b';') {
            self.at += 1;
            self.skip_spaces();
            self.key()?;
            if self.peek() == Some(b'=') {
                self.at += 1;
                self.item()?;
            }
        }
        Some(())
    }

    /// After a malformed member: on to the next comma outside strings and
    /// inner lists.
    fn skip_member(&mut self) {
        let mut in_string = false;
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                b'\\' if in_string => self.at += 1,
                b'"' => in_string = !in_string,
                b'(' if !in_string => depth += 1,
                b')' if !in_string => depth = depth.saturating_sub(1),
                b',' if !in_string && depth == 0 => return,
                _ => {}
            }
            self.at += 1;
        }
    }
}

#[cfg(test)]
mod tests;
