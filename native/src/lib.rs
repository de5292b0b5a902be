//! Compiled fast path of `threatq_provider.ecs.transform.transform_stream`.
//!
//! One NDJSON line of a raw ThreatQ indicator in, one ECS document (compact JSON) out, byte for
//! byte what the pure-Python reference (`plugins/threatq_provider/ecs/transform.py`) writes for
//! the same line. The Python module is the specification; this is an accelerator for the common,
//! clean record. Anything else -- a record the reference rejects, flags with `error.message`, or
//! that needs a rule this file does not carry (ISO dates with a zone, IPv6 CIDR blocks, non-ASCII
//! attribute names, floats, duplicate keys...) -- makes `map_line` return `None`, and the caller
//! runs the Python reference on that line. So the native path never decides a reject or an error
//! message, and a gap here costs speed, never correctness. `tests/unit/ecs/test_native.py` checks
//! the two paths are identical on the simulator corpus, Elastic's fixtures and awkward values.
//!
//! Why a parser of its own: a general JSON DOM (serde_json's `Value` with ordered maps) spent
//! most of its time allocating and hashing (~34 µs a line, slower than the Python path with
//! msgspec). Here strings borrow from the input line, objects are small ordered vectors, and the
//! document is written straight into one buffer.
//!
//! No mapping data is repeated here: Python hands over, as JSON, the loaded type tables
//! (`threatq_provider/data/mappings/threatq_to_ecs.json`, after its own validation), the key → kind
//! table of each ThreatQ object, the registry hive abbreviations and the expiry reason texts
//! (`threatq_provider.ecs.native.tables_json`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use rustc_hash::FxHashMap;
use serde_json::Value as Json;

// Rust's own allocations only (Python's objects keep Python's allocator): the parse allocates a
// few dozen small vectors per line, and glibc's malloc/free were ~12% of the time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// "Hand this line to the Python reference."
struct Fallback;
type R<T> = Result<T, Fallback>;

// ------------------------------------------------------------------------------------------
// A JSON value borrowing from the input line
// ------------------------------------------------------------------------------------------

type Text<'a> = Cow<'a, str>;

#[derive(Clone)]
enum V<'a> {
    Null,
    Bool(bool),
    /// An integer as written (canonical: no leading zeros, no "-0"; msgspec writes it back alike).
    Int(&'a str),
    /// An integer this code computed (a converted id, an AS number, a port).
    Num(i64),
    Str(Text<'a>),
    Arr(Vec<V<'a>>),
    Obj(Obj<'a>),
}

/// An object: keys in input order, as a Python dict keeps them (objects here have < 40 keys, so
/// a vector beats a hash map).
#[derive(Clone, Default)]
struct Obj<'a>(Vec<(Text<'a>, V<'a>)>);

impl<'a> Obj<'a> {
    fn with_capacity(n: usize) -> Self {
        Obj(Vec::with_capacity(n))
    }
    fn get(&self, key: &str) -> Option<&V<'a>> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    fn get_mut(&mut self, key: &str) -> Option<&mut V<'a>> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    fn contains(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
    /// `dict[key] = value`: an existing key keeps its place.
    fn insert(&mut self, key: impl Into<Text<'a>>, value: V<'a>) {
        let key = key.into();
        match self.get_mut(&key) {
            Some(slot) => *slot = value,
            None => self.0.push((key, value)),
        }
    }
    /// Append a key known to be absent (fresh objects).
    fn push(&mut self, key: impl Into<Text<'a>>, value: V<'a>) {
        self.0.push((key.into(), value));
    }
    /// `dict.pop(key, None)`: the others keep their order.
    fn remove(&mut self, key: &str) -> Option<V<'a>> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn s<'a>(text: impl Into<Text<'a>>) -> V<'a> {
    V::Str(text.into())
}

impl<'a> V<'a> {
    fn as_str(&self) -> Option<&str> {
        match self {
            V::Str(s) => Some(s),
            _ => None,
        }
    }
    /// Python truthiness.
    fn truthy(&self) -> bool {
        match self {
            V::Null => false,
            V::Bool(b) => *b,
            V::Int(raw) => *raw != "0",
            V::Num(n) => *n != 0,
            V::Str(s) => !s.is_empty(),
            V::Arr(a) => !a.is_empty(),
            V::Obj(o) => !o.is_empty(),
        }
    }
    fn is_number_or_bool(&self) -> bool {
        matches!(self, V::Int(_) | V::Num(_) | V::Bool(_))
    }
}

// ------------------------------------------------------------------------------------------
// Parser: RFC 8259 JSON, strict; floats, "-0", lone surrogates and duplicate keys fall back
// ------------------------------------------------------------------------------------------

const MAX_DEPTH: u32 = 64;

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn parse(text: &'a str) -> R<V<'a>> {
        let mut p = Parser { text, bytes: text.as_bytes(), pos: 0 };
        let value = p.value(0)?;
        p.ws();
        if p.pos != p.bytes.len() {
            return Err(Fallback);
        }
        Ok(value)
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> R<u8> {
        self.bytes.get(self.pos).copied().ok_or(Fallback)
    }

    fn expect(&mut self, word: &str) -> R<()> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Fallback)
        }
    }

    fn value(&mut self, depth: u32) -> R<V<'a>> {
        self.ws();
        match self.peek()? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => Ok(V::Str(self.string()?)),
            b't' => self.expect("true").map(|()| V::Bool(true)),
            b'f' => self.expect("false").map(|()| V::Bool(false)),
            b'n' => self.expect("null").map(|()| V::Null),
            b'-' | b'0'..=b'9' => self.integer(),
            _ => Err(Fallback),
        }
    }

    fn integer(&mut self) -> R<V<'a>> {
        let start = self.pos;
        if self.bytes[self.pos] == b'-' {
            self.pos += 1;
        }
        let digits = self.pos;
        while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        let n = self.pos - digits;
        if n == 0 || (n > 1 && self.bytes[digits] == b'0') {
            return Err(Fallback);
        }
        if let Some(b'.' | b'e' | b'E') = self.bytes.get(self.pos) {
            return Err(Fallback); // a float: Python's float text differs from ours in places
        }
        let raw = &self.text[start..self.pos];
        if raw == "-0" {
            return Err(Fallback);
        }
        Ok(V::Int(raw))
    }

    fn string(&mut self) -> R<Text<'a>> {
        self.pos += 1; // opening quote
        let start = self.pos;
        self.pos += clean_prefix(&self.bytes[self.pos..]);
        loop {
            match self.peek()? {
                b'"' => {
                    let text = &self.text[start..self.pos];
                    self.pos += 1;
                    return Ok(Cow::Borrowed(text));
                }
                b'\\' => break,
                b if b < 0x20 => return Err(Fallback),
                _ => self.pos += 1,
            }
        }
        let mut out = String::with_capacity(self.pos - start + 16);
        out.push_str(&self.text[start..self.pos]);
        loop {
            let b = self.peek()?;
            match b {
                b'"' => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                b'\\' => {
                    let escape = *self.bytes.get(self.pos + 1).ok_or(Fallback)?;
                    self.pos += 2;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let high = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&high) {
                                self.expect("\\u")?;
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(Fallback);
                                }
                                0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                            } else {
                                high
                            };
                            out.push(char::from_u32(code).ok_or(Fallback)?); // lone low surrogate: None
                        }
                        _ => return Err(Fallback),
                    }
                }
                b if b < 0x20 => return Err(Fallback),
                _ => {
                    // copy a run of plain characters (whole UTF-8 sequences: stops only at ASCII)
                    let run = self.pos;
                    while let Some(&c) = self.bytes.get(self.pos) {
                        if c == b'"' || c == b'\\' || c < 0x20 {
                            break;
                        }
                        self.pos += 1;
                    }
                    out.push_str(&self.text[run..self.pos]);
                }
            }
        }
    }

    fn hex4(&mut self) -> R<u32> {
        let digits = self.text.get(self.pos..self.pos + 4).ok_or(Fallback)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Fallback);
        }
        self.pos += 4;
        u32::from_str_radix(digits, 16).map_err(|_| Fallback)
    }

    fn array(&mut self, depth: u32) -> R<V<'a>> {
        if depth > MAX_DEPTH {
            return Err(Fallback);
        }
        self.pos += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(V::Arr(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Ok(V::Arr(items));
                }
                _ => return Err(Fallback),
            }
        }
    }

    fn object(&mut self, depth: u32) -> R<V<'a>> {
        if depth > MAX_DEPTH {
            return Err(Fallback);
        }
        self.pos += 1;
        let mut obj = Obj::with_capacity(16);
        // Duplicate keys (Python keeps the first place and the last value) fall back; a 256-bit
        // filter on (length, first, last byte) keeps the check off the common path.
        let mut seen = [0u64; 4];
        self.ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(V::Obj(obj));
        }
        loop {
            self.ws();
            if self.peek()? != b'"' {
                return Err(Fallback);
            }
            let key = self.string()?;
            let kb = key.as_bytes();
            let h = (kb.len().wrapping_mul(31) + usize::from(*kb.first().unwrap_or(&0)) * 7
                + usize::from(*kb.last().unwrap_or(&0)))
                & 255;
            if seen[h >> 6] & (1 << (h & 63)) != 0 && obj.contains(&key) {
                return Err(Fallback);
            }
            seen[h >> 6] |= 1 << (h & 63);
            self.ws();
            if self.peek()? != b':' {
                return Err(Fallback);
            }
            self.pos += 1;
            let value = self.value(depth)?;
            obj.push(key, value);
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(V::Obj(obj));
                }
                _ => return Err(Fallback),
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Writer: compact JSON escaped as msgspec (and serde_json) escape it
// ------------------------------------------------------------------------------------------

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Index of the first byte of `bytes` that JSON must escape (`"`, `\\`, below 0x20), or its
/// length: eight bytes per step (bit tricks on a u64; a hit only sends that word to the byte loop).
fn clean_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while i + 8 <= bytes.len() {
        let w = u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let below_space = w.wrapping_sub(ONES * 0x20) & !w;
        let quote = (w ^ (ONES * b'"' as u64)).wrapping_sub(ONES) & !(w ^ (ONES * b'"' as u64));
        let backslash = (w ^ (ONES * b'\\' as u64)).wrapping_sub(ONES) & !(w ^ (ONES * b'\\' as u64));
        if (below_space | quote | backslash) & HIGH != 0 {
            break;
        }
        i += 8;
    }
    while i < bytes.len() && !matches!(bytes[i], b'"' | b'\\' | 0..=0x1f) {
        i += 1;
    }
    i
}

fn write_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let mut bytes = text.as_bytes();
    loop {
        let clean = clean_prefix(bytes);
        out.extend_from_slice(&bytes[..clean]);
        let Some(&b) = bytes.get(clean) else { break };
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
        }
        bytes = &bytes[clean + 1..];
    }
    out.push(b'"');
}

fn write_value(out: &mut Vec<u8>, value: &V) {
    match value {
        V::Null => out.extend_from_slice(b"null"),
        V::Bool(true) => out.extend_from_slice(b"true"),
        V::Bool(false) => out.extend_from_slice(b"false"),
        V::Int(raw) => out.extend_from_slice(raw.as_bytes()),
        V::Num(n) => out.extend_from_slice(n.to_string().as_bytes()),
        V::Str(text) => write_str(out, text),
        V::Arr(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        V::Obj(obj) => write_obj(out, obj),
    }
}

fn write_obj(out: &mut Vec<u8>, obj: &Obj) {
    out.push(b'{');
    for (i, (k, v)) in obj.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

// ------------------------------------------------------------------------------------------
// Key kinds of each ThreatQ object: transform.py's _TOP_KINDS, _SOURCE_KINDS... handed over
// with the tables, so the key lists live in one place
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Date,
    Str,
    Long,
    Nested,
    Other,
}

/// Key → kind of one kind of object; keys not listed are copied (`Other`).
struct Kinds(FxHashMap<String, Kind>);

impl Kinds {
    fn of(&self, key: &str) -> Kind {
        self.0.get(key).copied().unwrap_or(Kind::Other)
    }

    fn load(tables: &Json, name: &str) -> PyResult<Kinds> {
        let what = || table_error(&format!("kinds.{name}"));
        let mut map = FxHashMap::default();
        for (key, kind) in tables["kinds"][name].as_object().ok_or_else(what)? {
            let kind = match kind.as_str() {
                Some("date") => Kind::Date,
                Some("str") => Kind::Str,
                Some("long") => Kind::Long,
                Some("nested") => Kind::Nested,
                _ => return Err(what()),
            };
            map.insert(key.clone(), kind);
        }
        Ok(Kinds(map))
    }
}

/// The key kinds of the indicator and of each nested object.
struct ObjectKinds {
    indicator: Kinds,
    source: Kinds,
    attribute: Kinds,
    adversary: Kinds,
    comment: Kinds,
    id_object: Kinds,
}

// ------------------------------------------------------------------------------------------
// Python value semantics
// ------------------------------------------------------------------------------------------

/// `str.strip()` for ASCII text (Python also strips \x0b and \x1c-\x1f).
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '\x1c'..='\x1f'))
}

/// `key_kinds.to_long` on a string; `Fallback` where the reference would report an error.
fn to_long_str(s: &str) -> R<i64> {
    if !s.is_ascii() {
        return Err(Fallback); // Unicode whitespace/digits: leave to Python
    }
    let text = py_strip(s);
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Fallback);
    }
    text.parse::<i64>().map_err(|_| Fallback)
}

/// `key_kinds.prune` in place: drop None, "", {} and [] recursively; `false` when nothing is left.
fn prune(v: &mut V) -> bool {
    match v {
        V::Obj(o) => {
            o.0.retain_mut(|(_, item)| prune_item(item));
            !o.is_empty()
        }
        V::Arr(a) => {
            a.retain_mut(prune_item);
            !a.is_empty()
        }
        _ => true,
    }
}

fn prune_item(v: &mut V) -> bool {
    match v {
        V::Null => false,
        V::Str(t) => !t.is_empty(),
        V::Obj(_) | V::Arr(_) => prune(v),
        _ => true,
    }
}

// ------------------------------------------------------------------------------------------
// Dates: ThreatQ's "YYYY-MM-DD HH:MM:SS" (UTC) -> "YYYY-MM-DDTHH:MM:SS.000Z"
// ------------------------------------------------------------------------------------------

fn digits(b: &[u8]) -> Option<u32> {
    let mut n = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(c - b'0');
    }
    Some(n)
}

#[allow(clippy::manual_is_multiple_of)] // `%` builds on toolchains older than 1.87 too
fn is_leap(y: u32) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// (year, month, day, hour, minute, second) of a valid fixed-form date (separator at 10 given).
fn fixed_form(s: &str, sep: u8) -> Option<(u32, u32, u32, u32, u32, u32)> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != sep || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (h, mi, se) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    let valid = y >= 1 && (1..=12).contains(&mo) && d >= 1 && d <= days_in_month(y, mo) && h <= 23 && mi <= 59 && se <= 59;
    valid.then_some((y, mo, d, h, mi, se))
}

/// A ThreatQ date in ECS form; `Fallback` for anything but the plain ThreatQ form (ISO-8601 with
/// a zone is converted by Python; an invalid date is reported by Python).
fn convert_date(s: &str) -> R<String> {
    if s.len() != 19 || fixed_form(s, b' ').is_none() {
        return Err(Fallback);
    }
    let mut out = String::with_capacity(24);
    out.push_str(&s[..10]);
    out.push('T');
    out.push_str(&s[11..]);
    out.push_str(".000Z");
    Ok(out)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `updated_at + duration` in ECS form (`expiry.expiration_of`, rule 4); `None` past year 9999,
/// where Python writes no expiry either.
fn add_seconds(ecs_date: &str, seconds: i64) -> Option<String> {
    let (y, mo, d, h, mi, se) = fixed_form(ecs_date, b'T')?;
    let millis = &ecs_date[19..23]; // ".000" (our dates always carry milliseconds)
    let total = days_from_civil(y.into(), mo.into(), d.into()) * 86_400
        + i64::from(h) * 3600
        + i64::from(mi) * 60
        + i64::from(se)
        + seconds;
    let (days, rest) = (total.div_euclid(86_400), total.rem_euclid(86_400));
    let (y, mo, d) = civil_from_days(days);
    if !(1..=9999).contains(&y) {
        return None;
    }
    Some(format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}{millis}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    ))
}

// ------------------------------------------------------------------------------------------
// Object copies with conversions (key_kinds.ObjectKinds.copy), consuming the parsed input
// ------------------------------------------------------------------------------------------

fn copy_obj<'a>(mut obj: Obj<'a>, kinds: &Kinds) -> R<Obj<'a>> {
    let mut failed = false;
    obj.0.retain_mut(|(k, v)| match convert(kinds.of(k), v) {
        Ok(keep) => keep,
        Err(Fallback) => {
            failed = true;
            false
        }
    });
    if failed {
        return Err(Fallback);
    }
    Ok(obj)
}

/// One value of a copied object, converted in place; `false` when the copy drops it.
fn convert(kind: Kind, v: &mut V) -> R<bool> {
    Ok(match kind {
        Kind::Date => match v {
            V::Str(t) if t.is_empty() => false,
            V::Str(t) => {
                *t = Cow::Owned(convert_date(t)?);
                true
            }
            V::Null => false,
            _ => return Err(Fallback), // reported as an unparsable date
        },
        Kind::Str => match v {
            V::Int(raw) => {
                *v = s(*raw); // str(int): the same canonical digits
                true
            }
            V::Num(n) => {
                *v = s(n.to_string());
                true
            }
            V::Bool(_) => true,
            _ => v.truthy(),
        },
        Kind::Long => match v {
            V::Int(_) | V::Num(_) => true,
            V::Null => false,
            V::Str(t) if t.is_empty() => false,
            V::Str(t) => {
                *v = V::Num(to_long_str(t)?);
                true
            }
            _ => return Err(Fallback), // reported as not an integer
        },
        Kind::Nested => v.truthy() || v.is_number_or_bool(),
        Kind::Other => match v {
            V::Obj(_) | V::Arr(_) => prune(v),
            V::Null => false,
            V::Str(t) => !t.is_empty(),
            _ => true,
        },
    })
}

/// `ObjectKinds.copy_list`: `None` when the value is not a non-empty list or nothing is left.
fn copy_list<'a>(items: Option<V<'a>>, kinds: &Kinds) -> R<Option<Vec<V<'a>>>> {
    let Some(V::Arr(items)) = items else { return Ok(None) };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            V::Obj(o) => {
                let copied = copy_obj(o, kinds)?;
                if !copied.is_empty() {
                    out.push(V::Obj(copied));
                }
            }
            V::Null => {}
            V::Str(ref t) if t.is_empty() => {}
            other => out.push(other),
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

// ------------------------------------------------------------------------------------------
// Tables
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum RuleKind {
    Keyword,
    Ip,
    Cidr,
    Asn,
    Url,
    Registry,
}

struct Rule {
    ecs_type: Option<String>,
    path: Vec<String>,
    kind: RuleKind,
    related: Option<String>,
    extra: Vec<(Vec<String>, String)>,
}

/// The document under construction: `threat.indicator.*` and `threatq.*` live in their own maps
/// until `finish`, as in transform.py.
struct Parts<'a> {
    doc: Obj<'a>,
    indicator: Obj<'a>,
    tq: Obj<'a>,
    related: Obj<'a>,
}

fn put<'a>(root: &mut Obj<'a>, path: &'a [String], value: V<'a>) {
    let (last, parents) = path.split_last().expect("paths are never empty");
    let mut node = root;
    for key in parents {
        if !matches!(node.get(key), Some(V::Obj(_))) {
            node.insert(key.as_str(), V::Obj(Obj::default()));
        }
        let Some(V::Obj(child)) = node.get_mut(key) else { unreachable!("just made an object") };
        node = child;
    }
    node.insert(last.as_str(), value);
}

fn put_field<'a>(parts: &mut Parts<'a>, path: &'a [String], value: V<'a>) {
    if path[0] == "threatq" {
        put(&mut parts.tq, &path[1..], value);
    } else if path.len() > 2 && path[0] == "threat" && path[1] == "indicator" {
        put(&mut parts.indicator, &path[2..], value);
    } else {
        put(&mut parts.doc, path, value);
    }
}

fn append_unique<'a>(related: &mut Obj<'a>, key: &'a str, value: Text<'a>) {
    match related.get_mut(key) {
        Some(V::Arr(values)) => {
            if !values.iter().any(|v| v.as_str() == Some(&value)) {
                values.push(V::Str(value));
            }
        }
        _ => related.insert(key, V::Arr(vec![V::Str(value)])),
    }
}

fn strs<'a>(items: &[&'static str]) -> V<'a> {
    V::Arr(items.iter().map(|t| s(*t)).collect())
}

fn obj1<'a>(key: &'static str, value: V<'a>) -> V<'a> {
    V::Obj(Obj(vec![(Cow::Borrowed(key), value)]))
}

/// `threatq.ioc_expiration_reason` texts (expiry.py's REASON_* constants, handed over).
struct Reasons {
    expired_at: String,
    expires_at: String,
    status: String,
    duration: String,
    status_policy: String,
}

/// ThreatQ NDJSON line → ECS JSON text, or `None` for the Python reference to handle.
#[pyclass(frozen, module = "threatq_ecs_native")]
struct Engine {
    types: HashMap<String, Rule>,
    kinds: ObjectKinds,
    /// Registry hive spellings → abbreviation (transform._HIVES).
    hives: FxHashMap<String, String>,
    reasons: Reasons,
    confidence: Vec<Option<String>>,
    tlp_prefixes: Vec<String>,
    tlp_spellings: HashMap<String, String>,
    keyword_max_chars: usize,
    ecs_version: String,
    /// (path, value) written on every document, in order (tables.Tables.constants).
    constants: Vec<(Vec<String>, String)>,
    /// (threat.indicator field, ThreatQ date keys by preference), in order (tables.Tables.indicator_dates).
    indicator_dates: Vec<(String, Vec<String>)>,
    keep: bool,
    preserve_original: bool,
    threatq_url: Option<String>,
    /// ThreatQ instance name written to threatq.instance (options.instance); `None`: none.
    instance: Option<String>,
    expiration_seconds: i64,
    /// Case-folded status names that keep an IOC active (options.status_policy); `None`: no policy.
    active_statuses: Option<Vec<String>>,
}

fn table_error(what: &str) -> PyErr {
    PyValueError::new_err(format!("threatq_ecs_native: malformed tables ({what})"))
}

fn path_of(v: &Json, what: &str) -> PyResult<Vec<String>> {
    let path: Vec<String> = v
        .as_array()
        .ok_or_else(|| table_error(what))?
        .iter()
        .map(|p| p.as_str().map(str::to_owned).ok_or_else(|| table_error(what)))
        .collect::<PyResult<_>>()?;
    if path.is_empty() {
        return Err(table_error(what));
    }
    Ok(path)
}

impl Engine {
    fn load_types(tables: &Json) -> PyResult<HashMap<String, Rule>> {
        let rows = tables["types"].as_object().ok_or_else(|| table_error("types"))?;
        let mut types = HashMap::with_capacity(rows.len());
        for (name, row) in rows {
            let kind = match row["kind"].as_str() {
                Some("keyword") => RuleKind::Keyword,
                Some("ip") => RuleKind::Ip,
                Some("cidr") => RuleKind::Cidr,
                Some("asn") => RuleKind::Asn,
                Some("url") => RuleKind::Url,
                Some("registry") => RuleKind::Registry,
                _ => return Err(table_error("kind")),
            };
            let mut extra = Vec::new();
            for pair in row["extra"].as_array().ok_or_else(|| table_error("extra"))? {
                let value = pair[1].as_str().ok_or_else(|| table_error("extra value"))?;
                extra.push((path_of(&pair[0], "extra path")?, value.to_owned()));
            }
            let rule = Rule {
                ecs_type: row["ecs_type"].as_str().map(str::to_owned),
                path: path_of(&row["path"], "path")?,
                kind,
                related: row["related"].as_str().map(str::to_owned),
                extra,
            };
            types.insert(name.clone(), rule);
        }
        Ok(types)
    }

    fn map<'a>(&'a self, text: &'a str) -> R<Vec<u8>> {
        let V::Obj(raw) = Parser::parse(text)? else { return Err(Fallback) };

        // Identity: type name, value, id (a reject in Python when missing).
        let type_name: Text<'a> = match raw.get("type") {
            Some(V::Obj(o)) => match o.get("name") {
                Some(V::Str(t)) => t.clone(),
                _ => return Err(Fallback),
            },
            Some(V::Str(t)) => t.clone(),
            _ => return Err(Fallback),
        };
        if !type_name.bytes().any(|b| b.is_ascii_alphanumeric()) {
            return Err(Fallback);
        }
        let value: Text<'a> = match raw.get("value") {
            Some(V::Str(t)) if !t.is_empty() => t.clone(),
            _ => return Err(Fallback),
        };
        let indicator_id: V<'a> = match raw.get("id") {
            Some(V::Int(raw_id)) => V::Int(raw_id),
            Some(V::Str(t)) => V::Num(to_long_str(t)?),
            _ => return Err(Fallback),
        };
        let updated = match raw.get("updated_at") {
            Some(V::Str(t)) if !t.is_empty() => convert_date(t)?,
            _ => return Err(Fallback), // flagged in Python: @timestamp from the run's clock
        };
        let status: Option<Text<'a>> = match raw.get("status") {
            Some(V::Obj(o)) => o.get("name").and_then(|n| n.as_str().map(|_| n)).and_then(|n| match n {
                V::Str(t) => Some(t.clone()),
                _ => None,
            }),
            Some(V::Str(t)) => Some(t.clone()),
            _ => None,
        };
        let rule = self.types.get(&*type_name);

        // Dates, ids, numbers; nested objects.
        let mut tq = copy_obj(raw, &self.kinds.indicator)?;
        tq.insert("id", indicator_id.clone());
        tq.insert("updated_at", s(updated.clone()));
        tq.remove("value");
        tq.insert("indicator_value", V::Str(value.clone()));
        if let Some(name) = &self.instance {
            tq.insert("instance", s(name.as_str()));
        }
        normalise_threatq(&mut tq, &self.kinds)?;

        let mut parts = Parts { doc: Obj::default(), indicator: Obj::with_capacity(8), tq, related: Obj::default() };
        if let Some(V::Str(hash)) = parts.tq.get("hash") {
            let hash = hash.clone();
            parts.related.push("hash", V::Arr(vec![V::Str(hash)]));
        }
        if let Some(V::Str(description)) = parts.tq.get("description") {
            if description.len() > self.keyword_max_chars {
                return Err(Fallback); // flagged in Python (kept only in threatq.description)
            }
            let description = description.clone();
            parts.indicator.push("description", V::Str(description));
        }
        let score = match parts.tq.get("score") {
            Some(V::Int(raw_score)) => raw_score.parse::<i64>().ok(),
            Some(V::Num(n)) => Some(*n),
            _ => None,
        };
        if let Some(Some(label)) = score.and_then(|n| usize::try_from(n).ok()).and_then(|n| self.confidence.get(n)) {
            parts.indicator.insert("confidence", s(label.as_str()));
        }
        if let Some(rule) = rule {
            self.place_value(rule, value, &mut parts)?;
        }
        if let Some(base) = &self.threatq_url {
            let id = match &indicator_id {
                V::Int(raw_id) => (*raw_id).to_owned(),
                V::Num(n) => n.to_string(),
                _ => unreachable!("ids are integers"),
            };
            parts.indicator.insert("reference", s(format!("{base}/indicators/{id}/details")));
        }
        // first_seen, last_seen, modified_at (transform.py): the first date of each row the object has.
        for (name, keys) in &self.indicator_dates {
            let date = keys.iter().find_map(|key| match parts.tq.get(key) {
                Some(V::Str(t)) => Some(t.clone()),
                _ => None,
            });
            if let Some(date) = date {
                parts.indicator.insert(name.as_str(), V::Str(date));
            }
        }
        self.sources(&mut parts)?;

        // Expiry (expiry.expiration_of); status.name read from the raw indicator.
        let date_of = |key: &str| match parts.tq.get(key) {
            Some(V::Str(t)) if !t.is_empty() => Some(t.clone()),
            _ => None,
        };
        let mut expiry: Option<(Text<'a>, &'a str)> = if let Some(at) = date_of("expired_at") {
            Some((at, self.reasons.expired_at.as_str()))
        } else if let Some(at) = date_of("expires_at") {
            Some((at, self.reasons.expires_at.as_str()))
        } else if status.as_deref() == Some("Expired") {
            Some((Cow::Owned(updated.clone()), self.reasons.status.as_str()))
        } else {
            add_seconds(&updated, self.expiration_seconds).map(|at| (Cow::Owned(at), self.reasons.duration.as_str()))
        };
        // Status policy (transform.py): a status outside it ends the IOC at its last update unless
        // an earlier rule ended it before. Python compares case-folded names; ASCII only here.
        if let (Some(name), Some(active)) = (status.as_deref(), &self.active_statuses) {
            if !name.is_ascii() {
                return Err(Fallback);
            }
            if !active.contains(&name.to_ascii_lowercase()) {
                let later = match &expiry {
                    None => true,
                    Some((at, _)) => at.as_ref() > updated.as_str(),
                };
                if later {
                    expiry = Some((Cow::Owned(updated.clone()), self.reasons.status_policy.as_str()));
                }
            }
        }
        if let Some((at, reason)) = expiry {
            parts.tq.insert("ioc_expired_at", V::Str(at));
            parts.tq.insert("ioc_expiration_reason", s(reason));
        }
        if !self.keep {
            for key in ["description", "score", "updated_at"] {
                parts.tq.remove(key);
            }
        }
        Ok(self.finish(updated, parts, text))
    }

    fn place_value<'a>(&'a self, rule: &'a Rule, value: Text<'a>, parts: &mut Parts<'a>) -> R<()> {
        if let Some(ecs_type) = &rule.ecs_type {
            parts.indicator.insert("type", s(ecs_type.as_str()));
        }
        if value.len() > self.keyword_max_chars {
            return Err(Fallback); // flagged in Python (bytes >= characters, so this is conservative)
        }
        let typed: V<'a> = match rule.kind {
            RuleKind::Keyword => V::Str(value.clone()),
            RuleKind::Ip => {
                let valid = if value.contains(':') {
                    value.parse::<Ipv6Addr>().is_ok()
                } else {
                    value.parse::<Ipv4Addr>().is_ok()
                };
                if !valid {
                    return Err(Fallback); // flagged in Python
                }
                V::Str(value.clone())
            }
            RuleKind::Cidr => s(ipv4_network(&value)?),
            RuleKind::Asn => V::Num(asn_number(&value)?),
            RuleKind::Url => {
                match parse_url(value.clone())? {
                    Some((url, domain)) => {
                        parts.indicator.insert("url", V::Obj(url));
                        append_unique(&mut parts.related, "hosts", domain);
                        parts.tq.remove("indicator_value"); // remove_if_successful, as Elastic
                    }
                    // Not an absolute URL (Elastic's uri_parts on_failure): the raw value goes to
                    // url.full and threatq.indicator_value stays.
                    None => parts.indicator.insert("url", obj1("full", V::Str(value))),
                }
                return Ok(());
            }
            RuleKind::Registry => {
                let (hive, rest) = match value.split_once('\\') {
                    Some((hive, rest)) => (hive, Some(rest)),
                    None => (&*value, None),
                };
                if !hive.is_ascii() {
                    return Err(Fallback); // str.upper() of non-ASCII text
                }
                let registry = parts.indicator.get_mut("registry");
                let mut node = match registry {
                    Some(V::Obj(o)) => std::mem::take(o),
                    _ => Obj::default(),
                };
                match (self.hives.get(hive.to_ascii_uppercase().as_str()), rest) {
                    (Some(abbreviation), Some(rest)) => {
                        node.insert("hive", s(abbreviation.as_str()));
                        if !rest.is_empty() {
                            node.insert("key", s(rest.to_owned()));
                        }
                    }
                    _ => node.insert("key", V::Str(value.clone())),
                }
                parts.indicator.insert("registry", V::Obj(node));
                V::Str(value.clone())
            }
        };
        let related_text: Text<'a> = match &typed {
            V::Str(t) => t.clone(),
            _ => value.clone(),
        };
        put_field(parts, &rule.path, typed);
        for (path, constant) in &rule.extra {
            put_field(parts, path, s(constant.as_str()));
        }
        if let Some(list) = &rule.related {
            append_unique(&mut parts.related, list, related_text);
        }
        Ok(())
    }

    fn tlp(&self, name: &str) -> R<Option<&str>> {
        if !name.is_ascii() {
            return Err(Fallback); // str.strip()/upper() of non-ASCII text
        }
        let mut text = py_strip(name).to_ascii_uppercase();
        if let Some(prefix) = self.tlp_prefixes.iter().find(|p| text.starts_with(p.as_str())) {
            text = py_strip(&text[prefix.len()..]).to_owned();
        }
        Ok(self.tlp_spellings.get(&text).map(String::as_str))
    }

    fn sources<'a>(&'a self, parts: &mut Parts<'a>) -> R<()> {
        let raw_sources = parts.tq.get_mut("sources").map(|v| std::mem::replace(v, V::Null));
        let Some(mut sources) = copy_list(raw_sources, &self.kinds.source)? else {
            parts.tq.remove("sources");
            return Ok(());
        };
        let mut providers: Vec<V<'a>> = Vec::new();
        let mut marking: Vec<V<'a>> = Vec::new();
        for src in &mut sources {
            let V::Obj(src) = src else { continue };
            if let Some(V::Str(name)) = src.get("name") {
                if !providers.iter().any(|p| p.as_str() == Some(name)) {
                    providers.push(V::Str(name.clone()));
                }
            }
            if let Some(V::Str(tlp_name)) = src.get("tlp_name") {
                if let Some(tlp) = self.tlp(tlp_name)? {
                    if !marking.iter().any(|m| m.as_str() == Some(tlp)) {
                        marking.push(s(tlp));
                    }
                }
            }
            if !self.keep {
                src.remove("provider");
                src.remove("tlp_name");
            }
        }
        parts.tq.insert("sources", V::Arr(sources));
        if !providers.is_empty() {
            parts.indicator.insert("provider", V::Arr(providers));
        }
        if !marking.is_empty() {
            parts.indicator.insert("marking", obj1("tlp", V::Arr(marking)));
        }
        Ok(())
    }

    fn finish<'a>(&'a self, timestamp: String, parts: Parts<'a>, text: &'a str) -> Vec<u8> {
        let mut event = Obj::with_capacity(4);
        event.push("kind", s("enrichment"));
        event.push("category", strs(&["threat"]));
        event.push("type", strs(&["indicator"]));
        if self.preserve_original {
            event.push("original", s(text));
        }
        let mut out = Obj::with_capacity(8);
        out.push("@timestamp", s(timestamp));
        out.push("ecs", obj1("version", s(self.ecs_version.as_str())));
        out.push("event", V::Obj(event));
        for (k, v) in parts.doc.0 {
            out.insert(k, v); // other top-level fields a type row may name (none today)
        }
        if !parts.indicator.is_empty() {
            out.insert("threat", obj1("indicator", V::Obj(parts.indicator)));
        }
        out.insert("threatq", V::Obj(parts.tq));
        if !parts.related.is_empty() {
            out.insert("related", V::Obj(parts.related));
        }
        match (self.preserve_original, self.keep) {
            (true, true) => out.insert("tags", strs(&["preserve_original_event", "preserve_duplicate_custom_fields"])),
            (true, false) => out.insert("tags", strs(&["preserve_original_event"])),
            (false, true) => out.insert("tags", strs(&["preserve_duplicate_custom_fields"])),
            (false, false) => {}
        }
        for (path, value) in &self.constants {
            put(&mut out, path, s(value.as_str()));
        }
        let mut buf = Vec::with_capacity(text.len() + text.len() / 2 + 256);
        write_obj(&mut buf, &out);
        buf
    }
}

/// transform._normalise_threatq: status, type, attributes, adversaries, comments, tags.
fn normalise_threatq(tq: &mut Obj, kinds: &ObjectKinds) -> R<()> {
    for key in ["status", "type"] {
        let Some(slot) = tq.get_mut(key) else { continue };
        match slot {
            V::Obj(o) => {
                let plain = matches!(o.get("id"), Some(V::Int(_))) && o.0.iter().all(|(_, v)| v.truthy());
                if plain {
                    if let Some(V::Int(raw_id)) = o.get("id") {
                        let id = s(*raw_id);
                        o.insert("id", id);
                    }
                } else {
                    *o = copy_obj(std::mem::take(o), &kinds.id_object)?;
                }
            }
            V::Str(t) => {
                let name = std::mem::take(t);
                *slot = obj1("name", V::Str(name));
            }
            _ => {}
        }
    }
    let lists = [("attributes", &kinds.attribute), ("adversaries", &kinds.adversary), ("comments", &kinds.comment)];
    for (key, list_kinds) in lists {
        if let Some(slot) = tq.get_mut(key) {
            match copy_list(Some(std::mem::replace(slot, V::Null)), list_kinds)? {
                Some(items) => *slot = V::Arr(items),
                None => {
                    tq.remove(key);
                }
            }
        }
    }
    if let Some(V::Arr(attributes)) = tq.get_mut("attributes") {
        for attr in attributes {
            if let V::Obj(attr) = attr {
                if let Some(V::Str(name)) = attr.get_mut("name") {
                    if !name.is_ascii() {
                        return Err(Fallback); // str.lower() of non-ASCII text
                    }
                    if name.bytes().any(|b| b.is_ascii_uppercase() || b == b' ') {
                        *name = Cow::Owned(name.to_ascii_lowercase().replace(' ', "_"));
                    }
                }
            }
        }
    }
    if let Some(tags) = tq.get_mut("tags") {
        let plain = matches!(tags, V::Arr(a) if a.iter().all(|t| matches!(t, V::Str(x) if !x.is_empty())));
        if !plain {
            let items: Vec<V> = match std::mem::replace(tags, V::Null) {
                V::Arr(a) => a,
                other => vec![other],
            };
            let mut kept = Vec::with_capacity(items.len());
            for item in items {
                let name = match item {
                    V::Obj(mut o) => o.remove("name").unwrap_or(V::Null),
                    other => other,
                };
                match name {
                    V::Null => {}
                    V::Str(ref t) if t.is_empty() => {}
                    V::Str(t) => kept.push(V::Str(t)),
                    V::Int(raw) => kept.push(s(raw)),
                    V::Num(n) => kept.push(s(n.to_string())),
                    _ => return Err(Fallback), // str() of a bool or a container
                }
            }
            if kept.is_empty() {
                tq.remove("tags");
            } else {
                *tags = V::Arr(kept);
            }
        }
    }
    Ok(())
}

/// `str(ipaddress.ip_network(value, strict=False))` for the plain `a.b.c.d/n` form.
fn ipv4_network(value: &str) -> R<String> {
    let (address, prefix) = value.split_once('/').ok_or(Fallback)?;
    if prefix.is_empty() || prefix.len() > 2 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Fallback);
    }
    let prefix: u32 = prefix.parse().map_err(|_| Fallback)?;
    if prefix > 32 {
        return Err(Fallback);
    }
    let address: Ipv4Addr = address.parse().map_err(|_| Fallback)?;
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    Ok(format!("{}/{prefix}", Ipv4Addr::from(u32::from(address) & mask)))
}

/// The AS number of `AS13335`, `as 13335` or `13335` (transform._ASN_RE on ASCII text).
fn asn_number(value: &str) -> R<i64> {
    if !value.is_ascii() || py_strip(value).len() != value.len() {
        return Err(Fallback);
    }
    let rest = if value.len() >= 2 && value[..2].eq_ignore_ascii_case("AS") { &value[2..] } else { value };
    let number = rest.trim_start_matches([' ', '\t']);
    if number.is_empty() || number.len() > 18 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Fallback);
    }
    let n: i64 = number.parse().map_err(|_| Fallback)?;
    if n > 4_294_967_295 {
        return Err(Fallback);
    }
    Ok(n)
}

/// transform._parse_url (urllib.parse.urlsplit): `None` for a value that is not an absolute URL
/// (no `scheme://`, e.g. `89.160.20.156:8080/maf.html`), decided exactly as Python decides it;
/// otherwise the `url` object and the host, for plain ASCII URLs. Anything unusual (spaces,
/// controls, brackets, backslashes, non-ASCII, no host, a bad port) falls back.
fn parse_url(value: Text<'_>) -> R<Option<(Obj<'_>, Text<'_>)>> {
    let Some((scheme, after)) = value.split_once(':') else { return Ok(None) };
    let mut chars = scheme.bytes();
    let scheme_ok = chars.next().is_some_and(|b| b.is_ascii_alphabetic())
        && chars.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'));
    if !scheme_ok || !after.starts_with("//") {
        return Ok(None);
    }
    if !value.bytes().all(|b| b > b' ' && b < 0x7f && !matches!(b, b'[' | b']' | b'\\')) {
        return Err(Fallback);
    }
    // Slices of the value; copied out when the value itself was unescaped into an owned string.
    let sub = |part: &str| -> Text<'_> {
        match &value {
            Cow::Borrowed(whole) => {
                let start = part.as_ptr() as usize - whole.as_ptr() as usize;
                Cow::Borrowed(&whole[start..start + part.len()])
            }
            Cow::Owned(_) => Cow::Owned(part.to_owned()),
        }
    };
    let rest = &after[2..];
    let netloc_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (netloc, mut rest) = rest.split_at(netloc_end);
    let mut fragment = "";
    if let Some((before, after)) = rest.split_once('#') {
        rest = before;
        fragment = after;
    }
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (userinfo, hostport) = netloc.rsplit_once('@').unwrap_or(("", netloc));
    let (host, port_text) = hostport.split_once(':').unwrap_or((hostport, ""));
    if host.is_empty() {
        return Err(Fallback);
    }
    let mut url = Obj::with_capacity(11);
    url.push("original", V::Str(value.clone()));
    url.push("full", V::Str(value.clone()));
    url.push(
        "scheme",
        if scheme.bytes().any(|b| b.is_ascii_uppercase()) { s(scheme.to_ascii_lowercase()) } else { V::Str(sub(scheme)) },
    );
    url.push("domain", V::Str(sub(host)));
    if !port_text.is_empty() {
        if port_text.len() > 5 || !port_text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Fallback);
        }
        let port: i64 = port_text.parse().map_err(|_| Fallback)?;
        if port > 65_535 {
            return Err(Fallback);
        }
        url.push("port", V::Num(port));
    }
    if !path.is_empty() {
        url.push("path", V::Str(sub(path)));
        let last = path.rsplit('/').next().unwrap_or_default();
        if let Some((_, extension)) = last.rsplit_once('.') {
            if !extension.is_empty() {
                url.push("extension", V::Str(sub(extension)));
            }
        }
    }
    if !query.is_empty() {
        url.push("query", V::Str(sub(query)));
    }
    if !fragment.is_empty() {
        url.push("fragment", V::Str(sub(fragment)));
    }
    if !userinfo.is_empty() {
        let (username, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        if !username.is_empty() {
            url.push("username", V::Str(sub(username)));
        }
        if !password.is_empty() {
            url.push("password", V::Str(sub(password)));
        }
    }
    let domain = sub(host);
    Ok(Some((url, domain)))
}

fn trim_line(line: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c');
    let start = line.iter().position(|b| !is_space(b)).unwrap_or(line.len());
    let end = line.iter().rposition(|b| !is_space(b)).map_or(start, |i| i + 1);
    &line[start..end]
}

#[pymethods]
impl Engine {
    /// :param tables_json: the loaded tables, as `threatq_provider.ecs.native.tables_json` writes them.
    #[new]
    #[pyo3(signature = (tables_json, *, keep_duplicates, preserve_original, threatq_url, expiration_seconds, active_statuses = None, instance = None))]
    fn new(
        tables_json: &str,
        keep_duplicates: bool,
        preserve_original: bool,
        threatq_url: Option<String>,
        expiration_seconds: i64,
        active_statuses: Option<Vec<String>>,
        instance: Option<String>,
    ) -> PyResult<Self> {
        let tables: Json = serde_json::from_str(tables_json).map_err(|e| table_error(&e.to_string()))?;
        let confidence = tables["confidence"]
            .as_array()
            .filter(|c| c.len() == 11)
            .ok_or_else(|| table_error("confidence"))?
            .iter()
            .map(|c| c.as_str().map(str::to_owned))
            .collect();
        let tlp_prefixes = tables["tlp_prefixes"]
            .as_array()
            .ok_or_else(|| table_error("tlp_prefixes"))?
            .iter()
            .map(|p| p.as_str().map(str::to_owned).ok_or_else(|| table_error("tlp_prefixes")))
            .collect::<PyResult<_>>()?;
        let tlp_spellings = tables["tlp_spellings"]
            .as_object()
            .ok_or_else(|| table_error("tlp_spellings"))?
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_str().ok_or_else(|| table_error("tlp_spellings"))?.to_owned())))
            .collect::<PyResult<_>>()?;
        let keyword_max_chars = tables["keyword_max_chars"].as_u64().ok_or_else(|| table_error("keyword_max_chars"))?;
        let kinds = ObjectKinds {
            indicator: Kinds::load(&tables, "indicator")?,
            source: Kinds::load(&tables, "source")?,
            attribute: Kinds::load(&tables, "attribute")?,
            adversary: Kinds::load(&tables, "adversary")?,
            comment: Kinds::load(&tables, "comment")?,
            id_object: Kinds::load(&tables, "id_object")?,
        };
        let text_of = |v: &Json, what: &str| v.as_str().map(str::to_owned).ok_or_else(|| table_error(what));
        let hives = tables["hives"]
            .as_object()
            .ok_or_else(|| table_error("hives"))?
            .iter()
            .map(|(k, v)| Ok((k.clone(), text_of(v, "hives")?)))
            .collect::<PyResult<_>>()?;
        let mut constants = Vec::new();
        for pair in tables["constants"].as_array().ok_or_else(|| table_error("constants"))? {
            let value = pair[1].as_str().ok_or_else(|| table_error("constant value"))?;
            constants.push((path_of(&pair[0], "constant path")?, value.to_owned()));
        }
        let mut indicator_dates = Vec::new();
        for pair in tables["indicator_dates"].as_array().ok_or_else(|| table_error("indicator_dates"))? {
            let name = pair[0].as_str().ok_or_else(|| table_error("indicator_dates field"))?;
            indicator_dates.push((name.to_owned(), path_of(&pair[1], "indicator_dates keys")?));
        }
        let reason = &tables["expiration_reasons"];
        let reasons = Reasons {
            expired_at: text_of(&reason["expired_at"], "expiration_reasons")?,
            expires_at: text_of(&reason["expires_at"], "expiration_reasons")?,
            status: text_of(&reason["status"], "expiration_reasons")?,
            duration: text_of(&reason["duration"], "expiration_reasons")?,
            status_policy: text_of(&reason["status_policy"], "expiration_reasons")?,
        };
        Ok(Engine {
            types: Engine::load_types(&tables)?,
            kinds,
            hives,
            reasons,
            confidence,
            tlp_prefixes,
            tlp_spellings,
            keyword_max_chars: usize::try_from(keyword_max_chars).map_err(|_| table_error("keyword_max_chars"))?,
            ecs_version: tables["ecs_version"].as_str().ok_or_else(|| table_error("ecs_version"))?.to_owned(),
            constants,
            indicator_dates,
            keep: keep_duplicates,
            preserve_original,
            threatq_url,
            instance,
            expiration_seconds,
            active_statuses,
        })
    }

    /// One NDJSON line (bytes or str) → the ECS document's JSON text, or `None` when the Python
    /// reference must handle the line (blank lines included).
    fn map_line<'py>(&self, py: Python<'py>, line: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyString>>> {
        let bytes: &[u8] = if let Ok(b) = line.cast::<PyBytes>() {
            b.as_bytes()
        } else if let Ok(text) = line.cast::<PyString>() {
            match text.to_str() {
                Ok(text) => text.as_bytes(),
                Err(_) => return Ok(None), // lone surrogates: Python decides what that line is
            }
        } else {
            return Ok(None);
        };
        let Ok(text) = std::str::from_utf8(trim_line(bytes)) else { return Ok(None) };
        if text.is_empty() {
            return Ok(None);
        }
        Ok(self.map(text).ok().map(|doc| {
            // SAFETY-free: the writer only emits UTF-8 (input text and ASCII escapes)
            let doc = String::from_utf8(doc).expect("the writer emits UTF-8");
            PyString::new(py, &doc)
        }))
    }
}

#[pymodule]
fn threatq_ecs_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    Ok(())
}
