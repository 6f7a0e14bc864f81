//! JSON text exactly as IPA emits it: Python's `json.dumps` defaults, i.e. `", "` between items,
//! `": "` after keys, and `ensure_ascii` (every non-ASCII character as a lowercase `\uXXXX`
//! escape, astral characters as surrogate pairs).

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{Formatter, Serializer};

/// A [`Formatter`] producing Python `json.dumps` separators and ASCII-only strings.
#[derive(Debug, Default, Clone, Copy)]
pub struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if fragment.is_ascii() {
            return w.write_all(fragment.as_bytes());
        }
        let mut buf = [0u16; 2];
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut buf) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// Serialise `value` as IPA would (`json.dumps(value)`).
pub fn to_python_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut ser = Serializer::with_formatter(&mut out, PythonFormatter);
    // Serialising our own types into a Vec cannot fail (no non-string map keys, no I/O errors).
    if value.serialize(&mut ser).is_err() {
        out.clear();
        out.extend_from_slice(b"null");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn separators_and_escapes_match_python_json_dumps() {
        let v = json!({"a": [1, 2.5, null, true], "b": {"c": "d\"\n\u{1}"}, "é": "€😀"});
        let s = String::from_utf8(to_python_json(&v)).unwrap();
        assert_eq!(
            s,
            r#"{"a": [1, 2.5, null, true], "b": {"c": "d\"\n\u0001"}, "\u00e9": "\u20ac\ud83d\ude00"}"#
        );
        assert_eq!(to_python_json(&json!({})), b"{}");
        assert_eq!(to_python_json(&json!([])), b"[]");
    }
}
