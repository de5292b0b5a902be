//! Compiled fast path of `threatq_provider.ecs.transform.transform_stream`.
//!
//! One NDJSON line of a raw ThreatQ indicator in, one ECS document (compact JSON) out, byte for
//! byte what the pure-Python reference (`plugins/threatq_provider/ecs/transform.py`) writes for
//! the same line. The Python module is the specification; this is an accelerator for the common,
//! clean record. Anything else -- a record the reference rejects, flags with `error.message`, or
//! that needs a rule this file does not carry (ISO dates with a zone, IPv6 CIDR blocks, non-ASCII
//! attribute names, floats...) -- makes `map_line` return `None`, and the caller runs the Python
//! reference on that line. So the native path never decides a reject or an error message, and a
//! gap here costs speed, never correctness. `tests/unit/ecs/test_native.py` checks the two paths
//! are identical on the simulator corpus, Elastic's fixtures and a list of awkward values.
//!
//! The mapping tables are not repeated here: Python hands over the loaded tables
//! (`include/mappings/threatq_to_ecs.json`, after its own validation) as JSON.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use serde_json::ser::Formatter;
use serde_json::{Map, Number, Value};

type Obj = Map<String, Value>;

/// "Hand this line to the Python reference."
struct Fallback;
type R<T> = Result<T, Fallback>;

// ------------------------------------------------------------------------------------------
// Key kinds of each ThreatQ object (transform.py's _TOP_KINDS, _SOURCE_KINDS, ...)
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Date,
    Str,
    Long,
    Nested,
    Other,
}

fn top_kind(key: &str) -> Kind {
    match key {
        "created_at" | "expired_at" | "expires_at" | "expires_calculated_at" | "published_at"
        | "touched_at" | "last_detected_at" => Kind::Date,
        "status" | "type" | "sources" | "attributes" | "adversaries" | "comments" | "tags" | "id"
        | "value" | "updated_at" => Kind::Nested,
        "status_id" | "type_id" => Kind::Str,
        "indicator_id" | "score" | "generated_score" | "manual_score" => Kind::Long,
        _ if key.starts_with("related_") && key.ends_with("_count") && is_related_count(key) => Kind::Long,
        _ => Kind::Other,
    }
}

const RELATED_OBJECTS: [&str; 22] = [
    "adversary", "asset", "attachment", "attack_pattern", "campaign", "course_of_action", "event",
    "exploit_target", "identity", "incident", "indicator", "infrastructure", "intrusion_set",
    "investigation", "malware", "note", "report", "signature", "task", "tool", "ttp", "vulnerability",
];

fn is_related_count(key: &str) -> bool {
    let name = &key["related_".len()..key.len() - "_count".len()];
    RELATED_OBJECTS.contains(&name)
}

fn source_kind(key: &str) -> Kind {
    match key {
        "created_at" | "published_at" | "updated_at" => Kind::Date,
        "source_score" => Kind::Long,
        "indicator_type_id" | "indicator_status_id" | "reference_id" | "creator_source_id" | "id"
        | "indicator_id" | "source_id" | "tlp_id" => Kind::Str,
        _ => Kind::Other,
    }
}

fn attribute_kind(key: &str) -> Kind {
    match key {
        "created_at" | "updated_at" | "touched_at" => Kind::Date,
        "attribute_id" | "id" | "indicator_id" => Kind::Str,
        _ => Kind::Other,
    }
}

fn adversary_kind(key: &str) -> Kind {
    match key {
        "created_at" | "updated_at" | "touched_at" => Kind::Date,
        "id" => Kind::Str,
        _ => Kind::Other,
    }
}

fn comment_kind(key: &str) -> Kind {
    match key {
        "created_at" | "updated_at" => Kind::Date,
        "id" | "indicator_id" | "creator_source_id" => Kind::Str,
        _ => Kind::Other,
    }
}

fn id_object_kind(key: &str) -> Kind {
    if key == "id" {
        Kind::Str
    } else {
        Kind::Other
    }
}

// ------------------------------------------------------------------------------------------
// Python value semantics
// ------------------------------------------------------------------------------------------

/// Python truthiness of a decoded JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i != 0,
            (_, Some(u)) => u != 0,
            _ => n.as_f64().is_some_and(|f| f != 0.0),
        },
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn is_int(n: &Number) -> bool {
    n.is_i64() || n.is_u64()
}

/// `str.strip()` for ASCII text (Python also strips \x0b and \x1c-\x1f).
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '\x1c'..='\x1f'))
}

/// `conversions.to_long` on a string; `Fallback` where the reference would report an error.
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

/// `conversions.prune`: drop None, "", {} and [] recursively; `None` when nothing is left.
fn prune(v: &Value) -> Option<Value> {
    match v {
        Value::Object(o) => {
            let mut out = Obj::with_capacity(o.len());
            for (k, item) in o {
                if let Some(kept) = prune_item(item) {
                    out.insert(k.clone(), kept);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(a) => {
            let out: Vec<Value> = a.iter().filter_map(prune_item).collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => Some(other.clone()),
    }
}

fn prune_item(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Object(_) | Value::Array(_) => prune(v),
        other => Some(other.clone()),
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
// Object copies with conversions (conversions.copy_generic)
// ------------------------------------------------------------------------------------------

fn copy_obj(obj: &Obj, kind_of: fn(&str) -> Kind) -> R<Obj> {
    let mut out = Obj::with_capacity(obj.len());
    for (k, v) in obj {
        match kind_of(k) {
            Kind::Date => match v {
                Value::String(s) if s.is_empty() => {}
                Value::String(s) => {
                    out.insert(k.clone(), Value::String(convert_date(s)?));
                }
                Value::Null => {}
                _ => return Err(Fallback), // reported as an unparsable date
            },
            Kind::Str => match v {
                Value::Number(n) if is_int(n) => {
                    out.insert(k.clone(), Value::String(n.to_string()));
                }
                Value::Number(_) => return Err(Fallback), // str(float): Python's repr
                Value::Bool(_) => {
                    out.insert(k.clone(), v.clone());
                }
                _ if truthy(v) => {
                    out.insert(k.clone(), v.clone());
                }
                _ => {}
            },
            Kind::Long => match v {
                Value::Number(n) if is_int(n) => {
                    out.insert(k.clone(), v.clone());
                }
                Value::Null => {}
                Value::String(s) if s.is_empty() => {}
                Value::String(s) => {
                    out.insert(k.clone(), Value::Number(to_long_str(s)?.into()));
                }
                _ => return Err(Fallback), // reported as not an integer
            },
            Kind::Nested => {
                if truthy(v) || matches!(v, Value::Number(_) | Value::Bool(_)) {
                    out.insert(k.clone(), v.clone());
                }
            }
            Kind::Other => match v {
                Value::Object(_) | Value::Array(_) => {
                    if let Some(pruned) = prune(v) {
                        out.insert(k.clone(), pruned);
                    }
                }
                Value::Null => {}
                Value::String(s) if s.is_empty() => {}
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            },
        }
    }
    Ok(out)
}

/// `ObjectKinds.copy_list`: `None` when the value is not a non-empty list or nothing is left.
fn copy_list(items: Option<&Value>, kind_of: fn(&str) -> Kind) -> R<Option<Vec<Value>>> {
    let Some(Value::Array(items)) = items else { return Ok(None) };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Object(o) => {
                let copied = copy_obj(o, kind_of)?;
                if !copied.is_empty() {
                    out.push(Value::Object(copied));
                }
            }
            Value::Null => {}
            Value::String(s) if s.is_empty() => {}
            other => out.push(other.clone()),
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

// ------------------------------------------------------------------------------------------
// Tables and options
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
struct Parts {
    doc: Obj,
    indicator: Obj,
    tq: Obj,
    related: Obj,
}

fn put(root: &mut Obj, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("paths are never empty");
    let mut node = root;
    for key in parents {
        let child = node.entry(key.clone()).or_insert_with(|| Value::Object(Obj::new()));
        if !child.is_object() {
            *child = Value::Object(Obj::new());
        }
        node = child.as_object_mut().expect("just made an object");
    }
    node.insert(last.clone(), value);
}

fn put_field(parts: &mut Parts, path: &[String], value: Value) {
    if path[0] == "threatq" {
        put(&mut parts.tq, &path[1..], value);
    } else if path.len() > 2 && path[0] == "threat" && path[1] == "indicator" {
        put(&mut parts.indicator, &path[2..], value);
    } else {
        put(&mut parts.doc, path, value);
    }
}

fn append_unique(related: &mut Obj, key: &str, value: &str) {
    match related.get_mut(key) {
        Some(Value::Array(values)) => {
            if !values.iter().any(|v| v.as_str() == Some(value)) {
                values.push(Value::String(value.to_owned()));
            }
        }
        _ => {
            related.insert(key.to_owned(), Value::Array(vec![Value::String(value.to_owned())]));
        }
    }
}

fn strs(v: &[&str]) -> Value {
    Value::Array(v.iter().map(|s| Value::String((*s).to_owned())).collect())
}

const REASON_EXPIRES_AT: &str = "Expiration set by ThreatQ from expires_at field";
const REASON_EXPIRED_AT: &str = "Expiration set by ThreatQ from expired_at field";
const REASON_STATUS: &str = "Expiration set by Elastic when threatq.status is 'Expired'";
const REASON_DURATION: &str =
    "Expiration set by Elastic from the integration's parameter `IOC Expiration Duration`";

/// Compact JSON, as msgspec writes it; a float makes the line fall back (Python's float text
/// and Rust's differ in places, e.g. `1e16`).
struct NoFloats;

impl Formatter for NoFloats {
    fn write_f32<W: ?Sized + io::Write>(&mut self, _: &mut W, _: f32) -> io::Result<()> {
        Err(io::Error::other("float"))
    }
    fn write_f64<W: ?Sized + io::Write>(&mut self, _: &mut W, _: f64) -> io::Result<()> {
        Err(io::Error::other("float"))
    }
}

/// ThreatQ NDJSON line → ECS JSON text, or `None` for the Python reference to handle.
#[pyclass(frozen, module = "threatq_ecs_native")]
struct Engine {
    types: HashMap<String, Rule>,
    confidence: Vec<Option<String>>,
    tlp_prefixes: Vec<String>,
    tlp_spellings: HashMap<String, String>,
    keyword_max_chars: usize,
    ecs_version: String,
    keep: bool,
    preserve_original: bool,
    threatq_url: Option<String>,
    expiration_seconds: i64,
}

fn table_error(what: &str) -> PyErr {
    PyValueError::new_err(format!("threatq_ecs_native: malformed tables ({what})"))
}

fn path_of(v: &Value, what: &str) -> PyResult<Vec<String>> {
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
    fn load_types(tables: &Value) -> PyResult<HashMap<String, Rule>> {
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

    fn map(&self, line: &[u8]) -> R<String> {
        let raw: Value = serde_json::from_slice(line).map_err(|_| Fallback)?;
        let Value::Object(raw) = raw else { return Err(Fallback) };

        // Identity: type name, value, id (a reject in Python).
        let type_name = match raw.get("type") {
            Some(Value::Object(o)) => o.get("name").and_then(Value::as_str),
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        }
        .ok_or(Fallback)?;
        if !type_name.bytes().any(|b| b.is_ascii_alphanumeric()) {
            return Err(Fallback);
        }
        let value = match raw.get("value") {
            Some(Value::String(s)) if !s.is_empty() => s.as_str(),
            _ => return Err(Fallback),
        };
        let indicator_id: Value = match raw.get("id") {
            Some(Value::Number(n)) if is_int(n) => Value::Number(n.clone()),
            Some(Value::String(s)) => Value::Number(to_long_str(s)?.into()),
            _ => return Err(Fallback),
        };
        let rule = self.types.get(type_name);
        let updated = match raw.get("updated_at") {
            Some(Value::String(s)) if !s.is_empty() => convert_date(s)?,
            _ => return Err(Fallback), // flagged in Python: @timestamp from the run's clock
        };

        // Dates, ids, numbers; nested objects.
        let mut tq = copy_obj(&raw, top_kind)?;
        tq.insert("id".into(), indicator_id.clone());
        tq.insert("updated_at".into(), Value::String(updated.clone()));
        tq.shift_remove("value");
        tq.insert("indicator_value".into(), Value::String(value.to_owned()));
        normalise_threatq(&mut tq)?;

        let mut parts = Parts { doc: Obj::new(), indicator: Obj::new(), tq, related: Obj::new() };
        if let Some(Value::String(hash)) = parts.tq.get("hash") {
            parts.related.insert("hash".into(), Value::Array(vec![Value::String(hash.clone())]));
        }
        if let Some(Value::String(description)) = parts.tq.get("description") {
            if description.len() > self.keyword_max_chars {
                return Err(Fallback); // flagged in Python (kept only in threatq.description)
            }
            parts.indicator.insert("description".into(), Value::String(description.clone()));
        }
        if let Some(score) = parts.tq.get("score").and_then(Value::as_i64) {
            if let Some(Some(label)) = usize::try_from(score).ok().and_then(|s| self.confidence.get(s)) {
                parts.indicator.insert("confidence".into(), Value::String(label.clone()));
            }
        }
        if let Some(rule) = rule {
            self.place_value(rule, value, &mut parts)?;
        }
        if let Some(base) = &self.threatq_url {
            parts.indicator.insert("reference".into(), Value::String(format!("{base}/indicators/{indicator_id}/details")));
        }
        self.sources(&mut parts)?;

        // Expiry (expiry.expiration_of); status.name read from the raw indicator.
        let status = match raw.get("status") {
            Some(Value::Object(o)) => o.get("name").and_then(Value::as_str),
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        };
        let date_of = |key: &str| match parts.tq.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let expiry = if let Some(at) = date_of("expired_at") {
            Some((at, REASON_EXPIRED_AT))
        } else if let Some(at) = date_of("expires_at") {
            Some((at, REASON_EXPIRES_AT))
        } else if status == Some("Expired") {
            Some((updated.clone(), REASON_STATUS))
        } else {
            add_seconds(&updated, self.expiration_seconds).map(|at| (at, REASON_DURATION))
        };
        if let Some((at, reason)) = expiry {
            parts.tq.insert("ioc_expired_at".into(), Value::String(at));
            parts.tq.insert("ioc_expiration_reason".into(), Value::String(reason.into()));
        }
        if !self.keep {
            for key in ["description", "score", "updated_at"] {
                parts.tq.shift_remove(key);
            }
        }
        self.finish(updated, parts, line)
    }

    fn place_value(&self, rule: &Rule, value: &str, parts: &mut Parts) -> R<()> {
        if let Some(ecs_type) = &rule.ecs_type {
            parts.indicator.insert("type".into(), Value::String(ecs_type.clone()));
        }
        if value.len() > self.keyword_max_chars {
            return Err(Fallback); // flagged in Python (bytes >= characters, so this is conservative)
        }
        let mut typed = Value::String(value.to_owned());
        match rule.kind {
            RuleKind::Keyword => {}
            RuleKind::Ip => {
                let valid = if value.contains(':') {
                    value.parse::<Ipv6Addr>().is_ok()
                } else {
                    value.parse::<Ipv4Addr>().is_ok()
                };
                if !valid {
                    return Err(Fallback);
                }
            }
            RuleKind::Cidr => typed = Value::String(ipv4_network(value)?),
            RuleKind::Asn => typed = Value::Number(asn_number(value)?.into()),
            RuleKind::Url => {
                let url = parse_url(value)?;
                let domain = url["domain"].as_str().unwrap_or_default().to_owned();
                parts.indicator.insert("url".into(), Value::Object(url));
                append_unique(&mut parts.related, "hosts", &domain);
                parts.tq.shift_remove("indicator_value"); // remove_if_successful, as Elastic
                return Ok(());
            }
            RuleKind::Registry => {
                let (hive, rest) = value.split_once('\\').unwrap_or((value, ""));
                if !hive.is_ascii() {
                    return Err(Fallback); // str.upper() of non-ASCII text
                }
                let registry = |key: &str| vec!["registry".to_owned(), key.to_owned()];
                match (hive_abbreviation(&hive.to_ascii_uppercase()), value.contains('\\')) {
                    (Some(abbreviation), true) => {
                        put(&mut parts.indicator, &registry("hive"), Value::String(abbreviation.into()));
                        if !rest.is_empty() {
                            put(&mut parts.indicator, &registry("key"), Value::String(rest.into()));
                        }
                    }
                    _ => put(&mut parts.indicator, &registry("key"), Value::String(value.into())),
                }
            }
        }
        let related_text = match &typed {
            Value::String(s) => s.clone(),
            _ => value.to_owned(),
        };
        put_field(parts, &rule.path, typed);
        for (path, constant) in &rule.extra {
            put_field(parts, path, Value::String(constant.clone()));
        }
        if let Some(list) = &rule.related {
            append_unique(&mut parts.related, list, &related_text);
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

    fn sources(&self, parts: &mut Parts) -> R<()> {
        let Some(mut sources) = copy_list(parts.tq.get("sources"), source_kind)? else {
            parts.tq.shift_remove("sources");
            return Ok(());
        };
        let mut providers: Vec<Value> = Vec::new();
        let mut marking: Vec<Value> = Vec::new();
        for src in &mut sources {
            let Value::Object(src) = src else { continue };
            if let Some(Value::String(name)) = src.get("name") {
                if !providers.iter().any(|p| p.as_str() == Some(name)) {
                    providers.push(Value::String(name.clone()));
                }
            }
            if let Some(Value::String(tlp_name)) = src.get("tlp_name") {
                if let Some(tlp) = self.tlp(tlp_name)? {
                    if !marking.iter().any(|m| m.as_str() == Some(tlp)) {
                        marking.push(Value::String(tlp.to_owned()));
                    }
                }
            }
            if !self.keep {
                src.shift_remove("provider");
                src.shift_remove("tlp_name");
            }
        }
        parts.tq.insert("sources".into(), Value::Array(sources));
        if !providers.is_empty() {
            parts.indicator.insert("provider".into(), Value::Array(providers));
        }
        if !marking.is_empty() {
            let mut tlp = Obj::new();
            tlp.insert("tlp".into(), Value::Array(marking));
            parts.indicator.insert("marking".into(), Value::Object(tlp));
        }
        Ok(())
    }

    fn finish(&self, timestamp: String, parts: Parts, line: &[u8]) -> R<String> {
        let mut event = Obj::with_capacity(4);
        event.insert("kind".into(), Value::String("enrichment".into()));
        event.insert("category".into(), strs(&["threat"]));
        event.insert("type".into(), strs(&["indicator"]));
        if self.preserve_original {
            let text = std::str::from_utf8(line).map_err(|_| Fallback)?;
            event.insert("original".into(), Value::String(text.to_owned()));
        }
        let mut ecs = Obj::with_capacity(1);
        ecs.insert("version".into(), Value::String(self.ecs_version.clone()));
        let mut out = Obj::with_capacity(8);
        out.insert("@timestamp".into(), Value::String(timestamp));
        out.insert("ecs".into(), Value::Object(ecs));
        out.insert("event".into(), Value::Object(event));
        for (k, v) in parts.doc {
            out.insert(k, v);
        }
        if !parts.indicator.is_empty() {
            let mut threat = Obj::with_capacity(1);
            threat.insert("indicator".into(), Value::Object(parts.indicator));
            out.insert("threat".into(), Value::Object(threat));
        }
        out.insert("threatq".into(), Value::Object(parts.tq));
        if !parts.related.is_empty() {
            out.insert("related".into(), Value::Object(parts.related));
        }
        match (self.preserve_original, self.keep) {
            (true, true) => out.insert("tags".into(), strs(&["preserve_original_event", "preserve_duplicate_custom_fields"])),
            (true, false) => out.insert("tags".into(), strs(&["preserve_original_event"])),
            (false, true) => out.insert("tags".into(), strs(&["preserve_duplicate_custom_fields"])),
            (false, false) => None,
        };
        let mut buf = Vec::with_capacity(line.len() + line.len() / 2);
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, NoFloats);
        serde::Serialize::serialize(&Value::Object(out), &mut ser).map_err(|_| Fallback)?;
        String::from_utf8(buf).map_err(|_| Fallback)
    }
}

/// transform._normalise_threatq: status, type, attributes, adversaries, comments, tags.
fn normalise_threatq(tq: &mut Obj) -> R<()> {
    for key in ["status", "type"] {
        let replacement = match tq.get(key) {
            Some(Value::Object(o)) => {
                let plain = matches!(o.get("id"), Some(Value::Number(n)) if is_int(n)) && o.values().all(truthy);
                if plain {
                    let mut copy = o.clone();
                    let id = copy["id"].to_string();
                    copy.insert("id".into(), Value::String(id));
                    Value::Object(copy)
                } else {
                    Value::Object(copy_obj(o, id_object_kind)?)
                }
            }
            Some(Value::String(s)) => {
                let mut named = Obj::with_capacity(1);
                named.insert("name".into(), Value::String(s.clone()));
                Value::Object(named)
            }
            _ => continue,
        };
        tq.insert(key.into(), replacement);
    }
    let lists: [(&str, fn(&str) -> Kind); 3] =
        [("attributes", attribute_kind), ("adversaries", adversary_kind), ("comments", comment_kind)];
    for (key, kind_of) in lists {
        if tq.contains_key(key) {
            match copy_list(tq.get(key), kind_of)? {
                Some(items) => {
                    tq.insert(key.into(), Value::Array(items));
                }
                None => {
                    tq.shift_remove(key);
                }
            }
        }
    }
    if let Some(Value::Array(attributes)) = tq.get_mut("attributes") {
        for attr in attributes {
            if let Value::Object(attr) = attr {
                if let Some(Value::String(name)) = attr.get_mut("name") {
                    if !name.is_ascii() {
                        return Err(Fallback); // str.lower() of non-ASCII text
                    }
                    *name = name.to_ascii_lowercase().replace(' ', "_");
                }
            }
        }
    }
    if let Some(tags) = tq.get("tags") {
        let plain = matches!(tags, Value::Array(a) if a.iter().all(|t| matches!(t, Value::String(s) if !s.is_empty())));
        if !plain {
            let items: Vec<&Value> = match tags {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            let mut kept = Vec::with_capacity(items.len());
            for item in items {
                let name = match item {
                    Value::Object(o) => o.get("name").unwrap_or(&Value::Null),
                    other => other,
                };
                match name {
                    Value::Null => {}
                    Value::String(s) if s.is_empty() => {}
                    Value::String(s) => kept.push(Value::String(s.clone())),
                    Value::Number(n) if is_int(n) => kept.push(Value::String(n.to_string())),
                    _ => return Err(Fallback), // str() of a float, bool or container
                }
            }
            if kept.is_empty() {
                tq.shift_remove("tags");
            } else {
                tq.insert("tags".into(), Value::Array(kept));
            }
        }
    }
    Ok(())
}

fn hive_abbreviation(hive: &str) -> Option<&'static str> {
    Some(match hive {
        "HKEY_LOCAL_MACHINE" | "HKLM" => "HKLM",
        "HKEY_CURRENT_USER" | "HKCU" => "HKCU",
        "HKEY_USERS" | "HKU" => "HKU",
        "HKEY_CLASSES_ROOT" | "HKCR" => "HKCR",
        "HKEY_CURRENT_CONFIG" | "HKCC" => "HKCC",
        _ => return None,
    })
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
fn asn_number(value: &str) -> R<u64> {
    if !value.is_ascii() || py_strip(value).len() != value.len() {
        return Err(Fallback);
    }
    let rest = if value.len() >= 2 && value[..2].eq_ignore_ascii_case("AS") { &value[2..] } else { value };
    let number = rest.trim_start_matches([' ', '\t']);
    if number.is_empty() || number.len() > 19 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Fallback);
    }
    let n: u64 = number.parse().map_err(|_| Fallback)?;
    if n > 4_294_967_295 {
        return Err(Fallback);
    }
    Ok(n)
}

/// transform._parse_url (urllib.parse.urlsplit) for plain ASCII URLs; anything unusual (spaces,
/// controls, brackets, backslashes, non-ASCII, no host, a bad port) falls back.
fn parse_url(value: &str) -> R<Obj> {
    if !value.bytes().all(|b| b > b' ' && b < 0x7f && !matches!(b, b'[' | b']' | b'\\')) {
        return Err(Fallback);
    }
    let (scheme, after) = value.split_once(':').ok_or(Fallback)?;
    let mut chars = scheme.bytes();
    let scheme_ok = chars.next().is_some_and(|b| b.is_ascii_alphabetic())
        && chars.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'));
    let Some(rest) = after.strip_prefix("//").filter(|_| scheme_ok) else { return Err(Fallback) };
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
    url.insert("original".into(), Value::String(value.into()));
    url.insert("full".into(), Value::String(value.into()));
    url.insert("scheme".into(), Value::String(scheme.to_ascii_lowercase()));
    url.insert("domain".into(), Value::String(host.into()));
    if !port_text.is_empty() {
        if port_text.len() > 5 || !port_text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Fallback);
        }
        let port: u32 = port_text.parse().map_err(|_| Fallback)?;
        if port > 65_535 {
            return Err(Fallback);
        }
        url.insert("port".into(), Value::Number(port.into()));
    }
    if !path.is_empty() {
        url.insert("path".into(), Value::String(path.into()));
        let last = path.rsplit('/').next().unwrap_or_default();
        if let Some((_, extension)) = last.rsplit_once('.') {
            if !extension.is_empty() {
                url.insert("extension".into(), Value::String(extension.into()));
            }
        }
    }
    if !query.is_empty() {
        url.insert("query".into(), Value::String(query.into()));
    }
    if !fragment.is_empty() {
        url.insert("fragment".into(), Value::String(fragment.into()));
    }
    if !userinfo.is_empty() {
        let (username, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, p),
            None => (userinfo, ""),
        };
        if !username.is_empty() {
            url.insert("username".into(), Value::String(username.into()));
        }
        if !password.is_empty() {
            url.insert("password".into(), Value::String(password.into()));
        }
    }
    Ok(url)
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
    #[pyo3(signature = (tables_json, *, keep_duplicates, preserve_original, threatq_url, expiration_seconds))]
    fn new(
        tables_json: &str,
        keep_duplicates: bool,
        preserve_original: bool,
        threatq_url: Option<String>,
        expiration_seconds: i64,
    ) -> PyResult<Self> {
        let tables: Value = serde_json::from_str(tables_json).map_err(|e| table_error(&e.to_string()))?;
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
        Ok(Engine {
            types: Engine::load_types(&tables)?,
            confidence,
            tlp_prefixes,
            tlp_spellings,
            keyword_max_chars: tables["keyword_max_chars"].as_u64().ok_or_else(|| table_error("keyword_max_chars"))? as usize,
            ecs_version: tables["ecs_version"].as_str().ok_or_else(|| table_error("ecs_version"))?.to_owned(),
            keep: keep_duplicates,
            preserve_original,
            threatq_url,
            expiration_seconds,
        })
    }

    /// One NDJSON line (bytes or str) → the ECS document's JSON text, or `None` when the Python
    /// reference must handle the line (blank lines included).
    fn map_line(&self, py: Python<'_>, line: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
        let bytes: &[u8] = if let Ok(b) = line.cast::<PyBytes>() {
            b.as_bytes()
        } else if let Ok(s) = line.cast::<PyString>() {
            s.to_str()?.as_bytes()
        } else {
            return Ok(None);
        };
        let text = trim_line(bytes);
        if text.is_empty() {
            return Ok(None);
        }
        let _ = py;
        Ok(self.map(text).ok())
    }
}

#[pymodule]
fn threatq_ecs_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Engine>()?;
    Ok(())
}
