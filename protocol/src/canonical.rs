//! Canonical JSON: the exact bytes that are signed.
//!
//! This is RFC 8785 (JSON Canonicalization Scheme) for the JSON this protocol uses: objects,
//! arrays, strings, booleans, null and integers. Object members are sorted by the UTF-16 code
//! units of their names, no insignificant whitespace is written, and strings are escaped as
//! RFC 8785 prescribes (`\b \t \n \f \r \" \\`, other control characters as lowercase `\u00xx`,
//! everything else as UTF-8). Numbers with a fraction or exponent are refused rather than
//! canonicalized: no signed document needs them, and their canonical form is where
//! implementations most often disagree.

use serde::Serialize;
use serde_json::Value;

/// Why a value has no canonical form here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    #[error("non-integer number {0} cannot be canonicalized (signed documents use integers only)")]
    NonInteger(String),
    #[error("value does not serialize to JSON: {0}")]
    Serialize(String),
}

/// The canonical bytes of any serializable value.
pub fn to_canonical_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let value = serde_json::to_value(value).map_err(|e| CanonicalError::Serialize(e.to_string()))?;
    canonicalize(&value)
}

/// The canonical bytes of a JSON value.
pub fn canonicalize(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() {
                out.extend_from_slice(n.to_string().as_bytes());
            } else {
                return Err(CanonicalError::NonInteger(n.to_string()));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<(&String, &Value)> = members.iter().collect();
            sorted.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, (name, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes()),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        String::from_utf8(canonicalize(v).unwrap()).unwrap()
    }

    /// RFC 8785 section 3.2.3: members sorted by UTF-16 code units, so the emoji (a surrogate
    /// pair starting 0xD83D) sorts before U+FB33 although its code point is larger.
    #[test]
    fn rfc8785_sorting_vector() {
        let input: Value = serde_json::from_str(
            r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh",
                "1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control",
                "\u00f6":"Latin Small Letter O With Diaeresis"}"#,
        )
        .unwrap();
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
                        \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
                        \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(canon(&input), expected);
    }

    /// RFC 8785 section 3.2.2.2: string escaping.
    #[test]
    fn rfc8785_string_escapes() {
        let v = json!({"s": "\u{20ac}$\u{000f}\u{000a}A'B\"\\\\\"/"});
        assert_eq!(canon(&v), "{\"s\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}");
    }

    #[test]
    fn nesting_whitespace_and_literals() {
        let v: Value = serde_json::from_str(r#"{ "b": [1, {"z": null, "a": true}], "a": -5, "c": false }"#).unwrap();
        assert_eq!(canon(&v), r#"{"a":-5,"b":[1,{"a":true,"z":null}],"c":false}"#);
    }

    #[test]
    fn fractions_are_refused() {
        assert!(matches!(canonicalize(&json!({"x": 1.5})), Err(CanonicalError::NonInteger(_))));
    }
}
