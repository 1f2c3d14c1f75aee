//! The lock-file payload: writing ours byte for byte as
//! `JSON.stringify(p, null, 2)` would, and reading anybody's (ours, the old
//! TypeScript module's, or garbage) without ever failing.
//!
//! Writing is hand-rolled (no allocation-heavy serializer on the acquire path);
//! reading uses `serde_json` on at most [`MAX_PAYLOAD_BYTES`] bytes.

use std::fmt::Write as _;

use crate::decimal;

/// The most bytes ever read from a lock file or marker. Anything longer is not
/// a payload we or the old module wrote, and is judged as unparseable.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// What we write into a lock file we hold: the reference rendering, which
/// [`OwnParts::render`] (what the acquire path uses) is tested against.
#[derive(Debug, Clone)]
pub struct LockPayload<'a> {
    pub pid: u32,
    pub created_at_ms: i64,
    pub start_time: Option<u64>,
    pub max_hold_ms: Option<u64>,
    pub fencing_token: &'a str,
    pub hostname: &'a str,
    pub boot_id: Option<&'a str>,
}

impl LockPayload<'_> {
    /// Render as `JSON.stringify(payload, null, 2)`: keys in contract order,
    /// absent values omitted, no trailing newline.
    pub fn render(&self, out: &mut String) {
        out.clear();
        out.push_str("{\n  \"pid\": ");
        push_u64(out, self.pid as u64, 1);
        out.push_str(",\n  \"createdAt\": \"");
        push_iso8601(out, self.created_at_ms);
        out.push('"');
        if let Some(st) = self.start_time {
            out.push_str(",\n  \"starttime\": ");
            push_u64(out, st, 1);
        }
        if let Some(m) = self.max_hold_ms {
            out.push_str(",\n  \"maxHoldMs\": ");
            push_u64(out, m, 1);
        }
        out.push_str(",\n  \"fencingToken\": ");
        push_json_string(out, self.fencing_token);
        out.push_str(",\n  \"hostname\": ");
        push_json_string(out, self.hostname);
        if let Some(b) = self.boot_id {
            out.push_str(",\n  \"bootId\": ");
            push_json_string(out, b);
        }
        out.push_str(",\n  \"lock\": \"os\"\n}");
    }
}

/// The parts of this process's payloads that never change between two
/// acquisitions (pid, host name, boot id), rendered once: every acquire and
/// hand-off renders a payload, and escaping the host name and boot id again
/// each time was most of the rendering. [`OwnParts::render`] writes exactly
/// what [`LockPayload::render`] writes for the same values.
#[derive(Debug, Clone)]
pub struct OwnParts {
    /// `{"pid": <pid>, "createdAt": "` (pretty-printed).
    head: String,
    /// From `, "hostname": ...` to the closing brace.
    tail: String,
}

impl OwnParts {
    pub fn new(pid: u32, hostname: &str, boot_id: Option<&str>) -> Self {
        let mut head = String::with_capacity(32);
        head.push_str("{\n  \"pid\": ");
        push_u64(&mut head, pid as u64, 1);
        head.push_str(",\n  \"createdAt\": \"");
        let mut tail = String::with_capacity(64 + hostname.len());
        tail.push_str(",\n  \"hostname\": ");
        push_json_string(&mut tail, hostname);
        if let Some(b) = boot_id {
            tail.push_str(",\n  \"bootId\": ");
            push_json_string(&mut tail, b);
        }
        tail.push_str(",\n  \"lock\": \"os\"\n}");
        OwnParts { head, tail }
    }

    /// As `LockPayload { pid, hostname, boot_id (these parts), .. }.render(out)`.
    pub fn render(
        &self,
        out: &mut String,
        created_at_ms: i64,
        start_time: Option<u64>,
        max_hold_ms: Option<u64>,
        fencing_token: &str,
    ) {
        out.clear();
        out.reserve(self.head.len() + self.tail.len() + fencing_token.len() + 96);
        out.push_str(&self.head);
        push_iso8601(out, created_at_ms);
        out.push('"');
        if let Some(st) = start_time {
            out.push_str(",\n  \"starttime\": ");
            push_u64(out, st, 1);
        }
        if let Some(m) = max_hold_ms {
            out.push_str(",\n  \"maxHoldMs\": ");
            push_u64(out, m, 1);
        }
        out.push_str(",\n  \"fencingToken\": ");
        push_json_string(out, fencing_token);
        out.push_str(&self.tail);
    }
}

/// Append `s` as a JSON string literal, escaped as `JSON.stringify` does.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    // Every payload renders its token and host name here: most strings need
    // no escape at all (and `core::fmt` is not needed for them).
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Append `ms` since the Unix epoch as `Date.prototype.toISOString` does
/// (`YYYY-MM-DDTHH:MM:SS.mmmZ`, years 0..=9999).
pub fn push_iso8601(out: &mut String, ms: i64) {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            y,
            m,
            d,
            rem / 3_600_000,
            (rem / 60_000) % 60,
            (rem / 1000) % 60,
            rem % 1000
        );
        return;
    }
    // Digits by hand into a fixed buffer: this runs for every payload
    // written (`core::fmt` with widths, then pushing digit by digit, cost
    // more than the rest of the rendering).
    let rem = rem as u64;
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y as u64);
    put(5, 2, m as u64);
    put(8, 2, d as u64);
    put(11, 2, rem / 3_600_000);
    put(14, 2, (rem / 60_000) % 60);
    put(17, 2, (rem / 1000) % 60);
    put(20, 3, rem % 1000);
    if let Ok(s) = std::str::from_utf8(&b) {
        out.push_str(s);
    }
}

/// Append `v` in decimal, zero-padded to at least `width` digits.
fn push_u64(out: &mut String, v: u64, width: usize) {
    let mut buf = [b'0'; decimal::MAX_DIGITS];
    let i = decimal::write_u64(&mut buf, v);
    let start = i.min(buf.len().saturating_sub(width));
    // One ASCII char at a time: `from_utf8` on the digits cost more than
    // producing them.
    for &b in &buf[start..] {
        out.push(b as char);
    }
}

/// `ms` as an ISO-8601 string.
pub fn iso8601(ms: i64) -> String {
    let mut s = String::with_capacity(24);
    push_iso8601(&mut s, ms);
    s
}

// Howard Hinnant's days-from-civil algorithms (public domain arithmetic).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parse the date forms `Date.parse` accepts for ISO-8601: `YYYY-MM-DD`,
/// optionally `THH:MM[:SS[.fff]]`, optionally `Z` or `±HH:MM`. A date-only
/// string is UTC, a date-time without zone is taken as UTC too (the old module
/// only ever wrote `toISOString()`). Returns epoch milliseconds.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = num(0..4)?;
    let mo = num(5..7)? as u32;
    let d = num(8..10)? as u32;
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    if b.len() == 10 {
        return Some(ms);
    }
    if b[10] != b'T' && b[10] != b't' && b[10] != b' ' {
        return None;
    }
    let mut i = 11;
    let h = num(i..i + 2)?;
    if b.get(i + 2) != Some(&b':') {
        return None;
    }
    let mi = num(i + 3..i + 5)?;
    i += 5;
    let mut sec = 0;
    let mut frac = 0;
    if b.get(i) == Some(&b':') {
        sec = num(i + 1..i + 3)?;
        i += 3;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            if end == start {
                return None;
            }
            let digits = &s.trim()[start..end.min(start + 3)];
            frac = digits.parse::<i64>().ok()? * 10i64.pow(3 - digits.len() as u32);
            i = end;
        }
    }
    if h > 24 || mi > 59 || sec > 59 || (h == 24 && (mi, sec, frac) != (0, 0, 0)) {
        return None;
    }
    ms += ((h * 60 + mi) * 60 + sec) * 1000 + frac;
    match b.get(i) {
        None => Some(ms),
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => Some(ms),
        Some(&sign @ (b'+' | b'-')) => {
            let oh = num(i + 1..i + 3)?;
            let om = if b.get(i + 3) == Some(&b':') {
                num(i + 4..i + 6)?
            } else {
                num(i + 3..i + 5)?
            };
            let end = if b.get(i + 3) == Some(&b':') {
                i + 6
            } else {
                i + 5
            };
            if end != b.len() || oh > 23 || om > 59 {
                return None;
            }
            let off = (oh * 60 + om) * 60_000;
            Some(if sign == b'+' { ms - off } else { ms + off })
        }
        _ => None,
    }
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Whatever could be read from a lock file. Every field is optional: garbage
/// reads as all-`None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedPayload {
    /// A positive integer pid (the old module's `isValidPid`).
    pub pid: Option<u32>,
    /// The `createdAt` string as written, if it was a string.
    pub created_at: Option<String>,
    /// `createdAt` parsed, if it parses.
    pub created_at_ms: Option<i64>,
    pub start_time: Option<u64>,
    pub max_hold_ms: Option<f64>,
    pub fencing_token: Option<String>,
    pub hostname: Option<String>,
    pub boot_id: Option<String>,
    /// `"lock": "os"`: the file's validity is the OS lock on it.
    pub os_lock: bool,
    /// The bytes were a JSON object at all.
    pub is_object: bool,
}

/// Parse a payload. Never fails, never panics; input longer than
/// [`MAX_PAYLOAD_BYTES`] is treated as garbage.
pub fn parse(bytes: &[u8]) -> ParsedPayload {
    let mut p = ParsedPayload::default();
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return p;
    }
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(bytes)
    else {
        return p;
    };
    p.is_object = true;
    if let Some(n) = obj.get("pid").and_then(|v| v.as_f64()) {
        if n.is_finite() && n > 0.0 && n.fract() == 0.0 && n <= u32::MAX as f64 {
            p.pid = Some(n as u32);
        }
    }
    if let Some(s) = obj.get("createdAt").and_then(|v| v.as_str()) {
        p.created_at = Some(s.to_string());
        p.created_at_ms = parse_iso8601(s);
    }
    if let Some(n) = obj.get("starttime").and_then(|v| v.as_f64()) {
        if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n < u64::MAX as f64 {
            p.start_time = Some(n as u64);
        }
    }
    p.max_hold_ms = obj
        .get("maxHoldMs")
        .and_then(|v| v.as_f64())
        .filter(|n| n.is_finite());
    let string = |k: &str| obj.get(k).and_then(|v| v.as_str()).map(str::to_string);
    p.fencing_token = string("fencingToken");
    p.hostname = string("hostname");
    p.boot_id = string("bootId");
    p.os_lock = obj.get("lock").and_then(|v| v.as_str()) == Some("os");
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_json_stringify() {
        let p = LockPayload {
            pid: 42,
            created_at_ms: 1_700_000_000_123,
            start_time: Some(99),
            max_hold_ms: Some(300_000),
            fencing_token: "abc",
            hostname: "h\"o\nst",
            boot_id: Some("b-1"),
        };
        let mut s = String::new();
        p.render(&mut s);
        assert_eq!(
            s,
            "{\n  \"pid\": 42,\n  \"createdAt\": \"2023-11-14T22:13:20.123Z\",\n  \"starttime\": 99,\n  \"maxHoldMs\": 300000,\n  \"fencingToken\": \"abc\",\n  \"hostname\": \"h\\\"o\\nst\",\n  \"bootId\": \"b-1\",\n  \"lock\": \"os\"\n}"
        );
        let back = parse(s.as_bytes());
        assert_eq!(back.pid, Some(42));
        assert_eq!(back.created_at_ms, Some(1_700_000_000_123));
        assert!(back.os_lock);
        assert_eq!(back.hostname.as_deref(), Some("h\"o\nst"));
    }

    #[test]
    fn own_parts_render_as_render() {
        for (pid, host, boot) in [
            (42u32, "h\"o\nst", Some("b-1")),
            (1, "host", None),
            (4_000_000, "", Some("x\u{1}")),
        ] {
            let parts = OwnParts::new(pid, host, boot);
            for (at, st, max, tok) in [
                (1_700_000_000_123i64, Some(99u64), Some(300_000u64), "abc"),
                (0, None, None, "t"),
                (
                    253_402_300_800_000,
                    Some(0),
                    None,
                    "0123456789abcdef01234567",
                ),
            ] {
                let mut want = String::new();
                LockPayload {
                    pid,
                    created_at_ms: at,
                    start_time: st,
                    max_hold_ms: max,
                    fencing_token: tok,
                    hostname: host,
                    boot_id: boot,
                }
                .render(&mut want);
                let mut got = String::from("stale bytes");
                parts.render(&mut got, at, st, max, tok);
                assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn omits_absent_values() {
        let p = LockPayload {
            pid: 1,
            created_at_ms: 0,
            start_time: None,
            max_hold_ms: None,
            fencing_token: "t",
            hostname: "h",
            boot_id: None,
        };
        let mut s = String::new();
        p.render(&mut s);
        assert_eq!(
            s,
            "{\n  \"pid\": 1,\n  \"createdAt\": \"1970-01-01T00:00:00.000Z\",\n  \"fencingToken\": \"t\",\n  \"hostname\": \"h\",\n  \"lock\": \"os\"\n}"
        );
    }

    #[test]
    fn iso_round_trips() {
        for ms in [
            0i64,
            1,
            951_782_400_000,
            1_709_251_199_999,
            253_402_300_799_999,
        ] {
            assert_eq!(parse_iso8601(&iso8601(ms)), Some(ms), "{ms}");
        }
        assert_eq!(parse_iso8601("2024-02-30T00:00:00Z"), None);
        assert_eq!(parse_iso8601("nope"), None);
        assert_eq!(
            parse_iso8601("2024-01-01T01:00:00+01:00"),
            Some(1_704_067_200_000)
        );
        assert_eq!(parse_iso8601("2024-01-01"), Some(1_704_067_200_000));
    }

    #[test]
    fn iso_digits_match_the_formatter() {
        // The hand-written digits against `core::fmt`'s widths, over four
        // centuries of instants (every month boundary and odd milliseconds).
        let reference = |ms: i64| {
            let days = ms.div_euclid(86_400_000);
            let rem = ms.rem_euclid(86_400_000);
            let (y, m, d) = civil_from_days(days);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                y,
                m,
                d,
                rem / 3_600_000,
                (rem / 60_000) % 60,
                (rem / 1000) % 60,
                rem % 1000
            )
        };
        let mut ms = -62_167_219_200_000i64; // 0000-01-01
        while ms < 253_402_300_800_000 {
            assert_eq!(iso8601(ms), reference(ms), "{ms}");
            assert_eq!(iso8601(ms + 86_399_999), reference(ms + 86_399_999));
            ms += 2_629_746_123 * 7;
        }
        assert_eq!(iso8601(-1), reference(-1));
        assert_eq!(iso8601(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
    }

    #[test]
    fn garbage_never_fails() {
        for g in [
            &b""[..],
            b"{}",
            b"[1,2]",
            b"\xff\xfe\x00",
            b"{\"pid\": -1}",
            b"{\"pid\": 1.5}",
            b"{\"pid\": \"12\"}",
            b"{\"pid\": 1e400}",
        ] {
            let p = parse(g);
            assert_eq!(p.pid, None, "{:?}", String::from_utf8_lossy(g));
            assert!(!p.os_lock);
        }
        let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert_eq!(parse(&big), ParsedPayload::default());
    }
}
