//! Lines of a replay file: `{"topic","key","value":{…}}` or kcat's `-J`
//! envelope, where `payload` carries the event as a string.

use std::borrow::Cow;
use std::io::{self, BufRead, Read};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::event::{DecodeError, MAX_LINE_BYTES};

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    topic: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    payload: Option<Cow<'a, str>>,
}

/// One record of a replay file, still undecoded.
#[derive(Debug)]
pub struct Record<'a> {
    pub topic: Cow<'a, str>,
    pub key: Option<Cow<'a, str>>,
    pub payload: Cow<'a, [u8]>,
}

fn not_envelope(why: impl std::fmt::Display) -> DecodeError {
    DecodeError::schema("$", format!("line is not an envelope: {why}"))
}

/// Splits a line into topic, key and payload bytes.
pub fn parse_line(line: &str) -> Result<Record<'_>, DecodeError> {
    if !line.trim_start().starts_with('{') {
        return Err(match serde_json::from_str::<serde::de::IgnoredAny>(line) {
            Err(e) => DecodeError::InvalidJson(e.to_string()),
            Ok(_) => not_envelope("expected a JSON object"),
        });
    }
    let env: Envelope = serde_json::from_str(line).map_err(|e| {
        if e.is_data() {
            not_envelope(e)
        } else {
            DecodeError::InvalidJson(e.to_string())
        }
    })?;
    let topic = env.topic.ok_or_else(|| not_envelope("no `topic`"))?;
    let payload = match (env.value, env.payload) {
        (Some(raw), _) if raw.get() != "null" => Cow::Borrowed(raw.get().as_bytes()),
        (_, Some(Cow::Borrowed(s))) => Cow::Borrowed(s.as_bytes()),
        (_, Some(Cow::Owned(s))) => Cow::Owned(s.into_bytes()),
        _ => {
            return Err(not_envelope(
                "no event: `value` and `payload` are absent or null",
            ))
        }
    };
    Ok(Record {
        topic,
        key: env.key,
        payload,
    })
}

/// The lines of a file, `\n`-separated, read into one reused buffer that
/// never grows past [`MAX_LINE_BYTES`].
pub struct Lines<R> {
    input: R,
    buf: Vec<u8>,
}

impl<R: BufRead> Lines<R> {
    pub fn new(input: R) -> Self {
        Lines {
            input,
            buf: Vec::new(),
        }
    }

    /// The next line's text (without the `\n`), or why it has none: not
    /// UTF-8, or too long to hold (then skipped unread). `None` at the end.
    pub fn next_line(&mut self) -> io::Result<Option<Result<&str, DecodeError>>> {
        self.buf.clear();
        let limit = MAX_LINE_BYTES as u64 + 1;
        if (&mut self.input)
            .take(limit)
            .read_until(b'\n', &mut self.buf)?
            == 0
        {
            return Ok(None);
        }
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() > MAX_LINE_BYTES {
            let size = self.skip_rest()?;
            return Ok(Some(Err(DecodeError::LineTooLong { size })));
        }
        Ok(Some(std::str::from_utf8(&self.buf).map_err(|e| {
            DecodeError::InvalidJson(format!("not UTF-8: {e}"))
        })))
    }

    /// Consumes the rest of a line too long to hold; returns its whole length.
    fn skip_rest(&mut self) -> io::Result<u64> {
        let mut size = self.buf.len() as u64;
        loop {
            let chunk = self.input.fill_buf()?;
            if chunk.is_empty() {
                return Ok(size);
            }
            let (len, end) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            size += len as u64;
            self.input.consume(len + usize::from(end));
            if end {
                return Ok(size);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_envelopes() {
        let plain =
            parse_line(r#"{"topic": "page-visits", "key": "c-1", "value": {"a": 1}}"#).unwrap();
        assert_eq!(plain.topic, "page-visits");
        assert_eq!(plain.key.as_deref(), Some("c-1"));
        assert_eq!(&*plain.payload, br#"{"a": 1}"#);
        let kcat = parse_line(
            r#"{"topic":"purchases","partition":0,"offset":7,"tstype":"create","ts":1,"broker":1,"key":null,"payload":"{\"a\":\"x\"}"}"#,
        )
        .unwrap();
        assert_eq!(kcat.topic, "purchases");
        assert_eq!(kcat.key, None);
        assert_eq!(&*kcat.payload, br#"{"a":"x"}"#);
    }

    /// Every line of `text`, read through a buffer of `capacity` bytes (the
    /// length of one too long to hold as the error).
    fn lines_of(text: &[u8], capacity: usize) -> Vec<Result<Vec<u8>, u64>> {
        let mut lines = Lines::new(io::BufReader::with_capacity(capacity, text));
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().unwrap() {
            out.push(match line {
                Ok(text) => Ok(text.as_bytes().to_vec()),
                Err(DecodeError::LineTooLong { size }) => Err(size),
                Err(e) => panic!("{e}"),
            });
        }
        out
    }

    #[test]
    fn lines_split_as_the_file_does() {
        for capacity in [1, 3, 7, 1 << 16] {
            let got = lines_of(b"a\n\nbc\r\n\nd", capacity);
            let want: Vec<Result<Vec<u8>, u64>> = [&b"a"[..], b"", b"bc\r", b"", b"d"]
                .map(|l| Ok(l.to_vec()))
                .into();
            assert_eq!(got, want, "capacity {capacity}");
            assert_eq!(lines_of(b"a\n", capacity), [Ok(b"a".to_vec())]);
            assert!(lines_of(b"", capacity).is_empty());
        }
    }

    #[test]
    fn a_line_too_long_to_hold_is_skipped_with_its_size() {
        let mut text = vec![b'x'; MAX_LINE_BYTES];
        text.push(b'\n');
        text.extend(vec![b'y'; MAX_LINE_BYTES + 10]);
        text.extend(b"\nnext\n");
        text.extend(vec![b'z'; MAX_LINE_BYTES + 1]);
        let got = lines_of(&text, 1 << 16);
        assert_eq!(got.len(), 4);
        assert_eq!(
            got[0].as_ref().map(Vec::len),
            Ok(MAX_LINE_BYTES),
            "the longest held"
        );
        assert_eq!(got[1], Err(MAX_LINE_BYTES as u64 + 10));
        assert_eq!(got[2], Ok(b"next".to_vec()));
        assert_eq!(
            got[3],
            Err(MAX_LINE_BYTES as u64 + 1),
            "unterminated, at the end"
        );
    }

    #[test]
    fn classifies_bad_lines() {
        assert_eq!(parse_line("{broken").unwrap_err().reason(), "invalid_json");
        assert_eq!(parse_line("[1]").unwrap_err().reason(), "schema_violation");
        assert_eq!(
            parse_line(r#"{"value": {}}"#).unwrap_err().reason(),
            "schema_violation"
        );
        assert_eq!(
            parse_line(r#"{"topic": "x"}"#).unwrap_err().reason(),
            "schema_violation"
        );
        let tombstone = parse_line(r#"{"topic":"x","key":"c","payload":null}"#).unwrap_err();
        assert_eq!(tombstone.reason(), "schema_violation");
        assert!(
            tombstone.to_string().contains("absent or null"),
            "{tombstone}"
        );
        assert_eq!(
            parse_line(r#"{"topic": 5, "value": {}}"#)
                .unwrap_err()
                .reason(),
            "schema_violation"
        );
    }
}
