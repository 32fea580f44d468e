//! `pysandbox._native`: the codec for values crossing the sandbox boundary, and the warm pool
//! (`warm`).
//!
//! Only data crosses: `None`, `bool`, `int` (any size), `float`, `str`, `bytes`, `list`, `tuple`,
//! `dict`, `set`, `frozenset`, nested. On the wire it is JSON with tags where JSON has no type of
//! its own: `{"i": hex}`, `{"f": repr}`, `{"b": hex}`, `{"su": hex}` (a string with lone
//! surrogates, as UTF-8 with surrogatepass), `{"t": [...]}`, `{"s": [...]}`, `{"fs": [...]}`,
//! `{"d": [[key, value], ...]}`; lists are arrays, strings are strings. The decoder is strict:
//! anything else (a bare JSON number, an unknown tag, an unhashable set member) is refused, and
//! nothing is ever evaluated.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString,
    PyTuple,
};
use serde_json::{Map, Value};

mod warm;

/// Deepest nesting accepted either way (serde_json's own parser stops at 128).
const MAX_DEPTH: usize = 100;

/// Encode `obj` for the sandbox; `path` names it in errors (`locals['data'][2]: cannot pass a
/// socket into the sandbox`).
#[pyfunction]
#[pyo3(signature = (obj, path = "value"))]
fn encode(obj: &Bound<'_, PyAny>, path: &str) -> PyResult<String> {
    Ok(enc(obj, path, 0)?.to_string())
}

fn tagged(tag: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert(tag.to_string(), v);
    Value::Object(m)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn enc(obj: &Bound<'_, PyAny>, path: &str, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "{path}: nested more than {MAX_DEPTH} levels deep"
        )));
    }
    let items = |it: Bound<'_, pyo3::types::PyIterator>, what: &str| -> PyResult<Vec<Value>> {
        let mut out = Vec::new();
        for (i, x) in it.enumerate() {
            out.push(enc(
                &x?,
                &format!("{path}{}", what.replace("{i}", &i.to_string())),
                depth + 1,
            )?);
        }
        Ok(out)
    };
    if obj.is_none() {
        Ok(Value::Null)
    } else if obj.is_instance_of::<PyBool>() {
        Ok(Value::Bool(obj.extract()?))
    } else if obj.is_instance_of::<PyInt>() {
        let i = obj.call_method0("__index__")?;
        let h: String = i.call_method1("__format__", ("x",))?.extract()?;
        Ok(tagged("i", Value::String(h)))
    } else if obj.is_instance_of::<PyFloat>() {
        let f: f64 = obj.extract()?;
        let r = PyFloat::new(obj.py(), f).repr()?.to_string();
        Ok(tagged("f", Value::String(r)))
    } else if let Ok(s) = obj.downcast::<PyString>() {
        match s.extract::<String>() {
            Ok(t) => Ok(Value::String(t)),
            Err(_) => {
                let b = s.call_method1("encode", ("utf-8", "surrogatepass"))?;
                Ok(tagged(
                    "su",
                    Value::String(hex(b.downcast::<PyBytes>()?.as_bytes())),
                ))
            }
        }
    } else if let Ok(b) = obj.downcast::<PyBytes>() {
        Ok(tagged("b", Value::String(hex(b.as_bytes()))))
    } else if let Ok(b) = obj.downcast::<PyByteArray>() {
        Ok(tagged("b", Value::String(hex(&b.to_vec()))))
    } else if obj.is_instance_of::<PyList>() {
        Ok(Value::Array(items(obj.try_iter()?, "[{i}]")?))
    } else if obj.is_instance_of::<PyTuple>() {
        Ok(tagged("t", Value::Array(items(obj.try_iter()?, "[{i}]")?)))
    } else if obj.is_instance_of::<PyFrozenSet>() {
        Ok(tagged("fs", Value::Array(items(obj.try_iter()?, " item")?)))
    } else if obj.is_instance_of::<PySet>() {
        Ok(tagged("s", Value::Array(items(obj.try_iter()?, " item")?)))
    } else if let Ok(d) = obj.downcast::<PyDict>() {
        let mut pairs = Vec::new();
        for (k, v) in d.iter() {
            let key_path = format!("{path}[{}]", k.repr()?);
            let key = enc(&k, &format!("{path} key {}", k.repr()?), depth + 1)?;
            pairs.push(Value::Array(vec![key, enc(&v, &key_path, depth + 1)?]));
        }
        Ok(tagged("d", Value::Array(pairs)))
    } else {
        let ty = obj.get_type();
        let name = ty.name()?.to_string();
        Err(PyTypeError::new_err(format!(
            "{path}: cannot pass a {name} into the sandbox (only None, bool, int, float, str, \
             bytes, list, tuple, dict, set and frozenset cross the boundary)"
        )))
    }
}

/// Decode data that came out of the sandbox (untrusted). Raises ValueError on anything that is
/// not pysandbox data.
#[pyfunction]
fn decode(py: Python<'_>, text: &str) -> PyResult<PyObject> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| PyValueError::new_err(format!("malformed data from the sandbox: {e}")))?;
    dec(py, &v, 0)
}

fn not_data(what: &str) -> PyErr {
    PyValueError::new_err(format!("not pysandbox data: {what}"))
}

fn unhex(s: &str) -> PyResult<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return Err(not_data("odd-length hex"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(s.get(i..i + 2).unwrap_or("zz"), 16).map_err(|_| not_data("bad hex"))
        })
        .collect()
}

pub(crate) fn dec(py: Python<'_>, v: &Value, depth: usize) -> PyResult<PyObject> {
    if depth > MAX_DEPTH {
        return Err(not_data("nested too deeply"));
    }
    let many = |x: &Value| -> PyResult<Vec<PyObject>> {
        match x {
            Value::Array(a) => a.iter().map(|y| dec(py, y, depth + 1)).collect(),
            _ => Err(not_data("expected an array")),
        }
    };
    let text = |x: &Value| -> PyResult<String> {
        x.as_str()
            .map(str::to_string)
            .ok_or_else(|| not_data("expected a string"))
    };
    Ok(match v {
        Value::Null => py.None(),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Value::String(s) => PyString::new(py, s).into_any().unbind(),
        Value::Array(_) => PyList::new(py, many(v)?)?.into_any().unbind(),
        Value::Number(_) => return Err(not_data("a bare number")),
        Value::Object(m) => {
            let (tag, x) = match m.iter().next() {
                Some(kv) if m.len() == 1 => kv,
                _ => return Err(not_data("an object that is not a single tag")),
            };
            let builtins = py.import("builtins")?;
            match tag.as_str() {
                "i" => {
                    let s = text(x)?;
                    let digits = s.strip_prefix('-').unwrap_or(&s);
                    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
                        return Err(not_data("bad integer"));
                    }
                    builtins.getattr("int")?.call1((s, 16))?.unbind()
                }
                "f" => {
                    let s = text(x)?;
                    let ok = s.len() <= 40
                        && s.bytes()
                            .all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c));
                    if !ok {
                        return Err(not_data("bad float"));
                    }
                    builtins
                        .getattr("float")?
                        .call1((s,))
                        .map_err(|_| not_data("bad float"))?
                        .unbind()
                }
                "b" => PyBytes::new(py, &unhex(&text(x)?)?).into_any().unbind(),
                "su" => PyBytes::new(py, &unhex(&text(x)?)?)
                    .call_method1("decode", ("utf-8", "surrogatepass"))
                    .map_err(|_| not_data("bad string"))?
                    .unbind(),
                "t" => PyTuple::new(py, many(x)?)?.into_any().unbind(),
                "s" => PySet::new(py, many(x)?)
                    .map_err(|_| not_data("an unhashable set member"))?
                    .into_any()
                    .unbind(),
                "fs" => PyFrozenSet::new(py, many(x)?)
                    .map_err(|_| not_data("an unhashable set member"))?
                    .into_any()
                    .unbind(),
                "d" => {
                    let d = PyDict::new(py);
                    let Value::Array(pairs) = x else {
                        return Err(not_data("a dict that is not a list of pairs"));
                    };
                    for p in pairs {
                        match p {
                            Value::Array(kv) if kv.len() == 2 => {
                                let k = dec(py, &kv[0], depth + 1)?;
                                let val = dec(py, &kv[1], depth + 1)?;
                                d.set_item(k, val)
                                    .map_err(|_| not_data("an unhashable dict key"))?;
                            }
                            _ => return Err(not_data("a dict entry that is not a pair")),
                        }
                    }
                    d.into_any().unbind()
                }
                other => return Err(not_data(&format!("unknown tag '{other}'"))),
            }
        }
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode, m)?)?;
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    warm::register(m)?;
    Ok(())
}
