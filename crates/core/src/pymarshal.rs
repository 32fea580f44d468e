//! JSON data in CPython's `marshal` format, which the interpreter reads without importing
//! anything: the guard's configuration of a cold run (`marshal.loads` in `bootstrap/support.py`)
//! instead of JSON, whose C scanner is an extension module to load (about 0.25 ms of every run).
//! Only data: `None`, booleans, 32-bit integers, floats, strings, lists and dicts with string
//! keys; anything else (a larger integer) is `None` here, and the caller hands over the JSON.

use serde_json::Value;

/// What marks marshalled data on a descriptor that may hold JSON instead.
pub const MAGIC: &[u8; 8] = b"\0PYSBMD\0";

/// `value` marshalled (format version 4, no references), or `None` if it holds something this
/// encoder does not write.
pub fn encode(value: &Value) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    put(value, &mut out)?;
    Some(out)
}

fn put(value: &Value, out: &mut Vec<u8>) -> Option<()> {
    match value {
        Value::Null => out.push(b'N'),
        Value::Bool(true) => out.push(b'T'),
        Value::Bool(false) => out.push(b'F'),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let i = i32::try_from(i).ok()?;
                out.push(b'i');
                out.extend(i.to_le_bytes());
            } else if n.is_u64() {
                return None;
            } else {
                out.push(b'g');
                out.extend(n.as_f64()?.to_le_bytes());
            }
        }
        Value::String(s) => string(s, out)?,
        Value::Array(items) => {
            out.push(b'[');
            out.extend(u32::try_from(items.len()).ok()?.to_le_bytes());
            for v in items {
                put(v, out)?;
            }
        }
        Value::Object(map) => {
            out.push(b'{');
            for (k, v) in map {
                string(k, out)?;
                put(v, out)?;
            }
            out.push(b'0');
        }
    }
    Some(())
}

fn string(s: &str, out: &mut Vec<u8>) -> Option<()> {
    out.push(b'u');
    out.extend(u32::try_from(s.len()).ok()?.to_le_bytes());
    out.extend(s.as_bytes());
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the real interpreter reads back is the data (compared with its own JSON reading).
    #[test]
    fn the_interpreter_reads_back_the_data() {
        let Ok(interp) = crate::interp::resolve(None) else {
            return;
        };
        let text = r#"{"a": [1, -2, 2147483647, 1.5, true, false, null], "é ü": {"x": "y\u2603"},
                       "empty": {}, "none": []}"#;
        let v: Value = serde_json::from_str(text).unwrap();
        let data = encode(&v).unwrap();
        let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
        let check = format!(
            "import json, marshal\nd = marshal.loads(bytes.fromhex('{hex}'))\n\
             print(d == json.loads({text:?}))"
        );
        let out = std::process::Command::new(&interp.executable)
            .args(["-I", "-S", "-c", &check])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "True",
            "{out:?}"
        );
        // Beyond 32 bits: not encoded (the caller sends JSON).
        assert!(encode(&serde_json::json!({"n": 1u64 << 40})).is_none());
    }
}
