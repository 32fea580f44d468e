//! `pysandbox._native`: the codec for values crossing the sandbox boundary, and the warm pool
//! (`warm`).
//!
//! Only data crosses: `None`, `bool`, `int` (any size), `float`, `str`, `bytes`, `list`, `tuple`,
//! `dict`, `set`, `frozenset`, nested. On the wire it is JSON with tags where JSON has no type of
//! its own: `{"i": hex}`, `{"f": repr}`, `{"b": hex}`, `{"su": hex}` (a string with lone
//! surrogates, as UTF-8 with surrogatepass), `{"t": [...]}`, `{"s": [...]}`, `{"fs": [...]}`,
//! `{"d": [[key, value], ...]}`; lists are arrays, strings are strings. The decoder is strict:
//! anything else (a bare JSON number, an unknown tag, an unhashable set member) is refused, and
//! nothing is ever evaluated. Decoding takes time linear in the data's size: a set or dict whose
//! keys the sandbox chose to share a hash is refused (see `MAX_SAME_HASH`).

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString,
    PyTuple, PyType,
};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;

mod warm;

/// Deepest nesting accepted either way (serde_json's own parser stops at 128).
const MAX_DEPTH: usize = 100;

/// Encode `obj` for the sandbox; `path` names it in errors (`locals['data'][2]: cannot pass a
/// socket into the sandbox`).
#[pyfunction]
#[pyo3(signature = (obj, path = "value"))]
fn encode(obj: &Bound<'_, PyAny>, path: &str) -> PyResult<String> {
    Ok(enc(obj, &Path::Root(path), 0)?.to_string())
}

/// Where a value sits in what is being encoded, written out only for an error message: text
/// made for every value would cost time in the size times the depth, and a dict key's repr
/// copied into the path of every value under it (or failing: the repr of an int of more than
/// 4300 digits raises ValueError).
pub enum Path<'a, 'py> {
    /// A name given by the caller (`value`, `locals['data']`).
    Root(&'a str),
    /// `path[i]`: an item of a list or tuple.
    Item(&'a Path<'a, 'py>, usize),
    /// `path item`: a member of a set or frozenset.
    Member(&'a Path<'a, 'py>),
    /// `path key repr(key)`: a dict key.
    Key(&'a Path<'a, 'py>, &'a Bound<'py, PyAny>),
    /// `path[repr(key)]`: a dict value.
    Value(&'a Path<'a, 'py>, &'a Bound<'py, PyAny>),
}

impl fmt::Display for Path<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let repr = |k: &Bound<'_, PyAny>| match k.repr() {
            Ok(r) => r.to_string(),
            Err(_) => format!(
                "<{}>",
                k.get_type().name().map_or("?".into(), |n| n.to_string())
            ),
        };
        match self {
            Path::Root(name) => f.write_str(name),
            Path::Item(p, i) => write!(f, "{p}[{i}]"),
            Path::Member(p) => write!(f, "{p} item"),
            Path::Key(p, k) => write!(f, "{p} key {}", repr(k)),
            Path::Value(p, k) => write!(f, "{p}[{}]", repr(k)),
        }
    }
}

fn tagged(tag: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert(tag.to_string(), v);
    Value::Object(m)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn enc(obj: &Bound<'_, PyAny>, path: &Path<'_, '_>, depth: usize) -> PyResult<Value> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "{path}: nested more than {MAX_DEPTH} levels deep"
        )));
    }
    let items = |it: Bound<'_, pyo3::types::PyIterator>, members: bool| -> PyResult<Vec<Value>> {
        let mut out = Vec::new();
        for (i, x) in it.enumerate() {
            let at = if members {
                Path::Member(path)
            } else {
                Path::Item(path, i)
            };
            out.push(enc(&x?, &at, depth + 1)?);
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
        Ok(Value::Array(items(obj.try_iter()?, false)?))
    } else if obj.is_instance_of::<PyTuple>() {
        Ok(tagged("t", Value::Array(items(obj.try_iter()?, false)?)))
    } else if obj.is_instance_of::<PyFrozenSet>() {
        Ok(tagged("fs", Value::Array(items(obj.try_iter()?, true)?)))
    } else if obj.is_instance_of::<PySet>() {
        Ok(tagged("s", Value::Array(items(obj.try_iter()?, true)?)))
    } else if let Ok(d) = obj.downcast::<PyDict>() {
        let mut pairs = Vec::new();
        for (k, v) in d.iter() {
            let key = enc(&k, &Path::Key(path, &k), depth + 1)?;
            pairs.push(Value::Array(vec![
                key,
                enc(&v, &Path::Value(path, &k), depth + 1)?,
            ]));
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
/// not pysandbox data. The JSON is parsed with the GIL released.
#[pyfunction]
fn decode(py: Python<'_>, text: &str) -> PyResult<PyObject> {
    let v = py
        .allow_threads(|| parse(text))
        .map_err(PyValueError::new_err)?;
    decode_value(py, v)
}

/// Parse the JSON of data from the sandbox (no GIL needed); the error is a ValueError's message.
pub fn parse(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not pysandbox data: not JSON ({e})"))
}

/// Build the Python value of parsed data from the sandbox, in time linear in its size.
pub fn decode_value(py: Python<'_>, v: Value) -> PyResult<PyObject> {
    let out = Decoder {
        py,
        int: py.get_type::<PyInt>(),
        float: py.get_type::<PyFloat>(),
    }
    .dec(&v, 0);
    // Freeing the parsed tree takes a while too (about 0.1 s for a million values).
    py.allow_threads(move || drop(v));
    out
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

fn text(x: &Value) -> PyResult<&str> {
    x.as_str().ok_or_else(|| not_data("expected a string"))
}

fn array(x: &Value) -> PyResult<&[Value]> {
    x.as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| not_data("expected an array"))
}

/// Most members of one set, or keys of one dict, that may share a hash value.
///
/// CPython builds a set or dict in linear time only while keys' full hashes differ: keys with
/// the same hash follow the same probe sequence, so the k-th one is compared with the k - 1
/// before it, and n of them cost n²/2 comparisons (issue 11: ints that are multiples of
/// 2**61 - 1, the modulus of CPython's numeric hash, all hash to 0; a set of them in a 1.7 MB
/// result held the GIL for 18 s).
/// str and bytes hashes are keyed with this process's secret (SipHash), which the sandbox does
/// not know, but int, float, bool, None, tuple and frozenset hashes are the same in every
/// process, so the sandbox can choose keys that collide. With at most `B` keys per hash value a
/// set of n keys costs at most n·B/2 extra comparisons: linear, 16 per key at B = 32. Honest
/// data never comes near it: distinct values share a 64-bit hash only when built to (ints
/// congruent modulo 2**61 - 1; -1 and -2, the one natural pair; NaNs on Python 3.9, where
/// hash(nan) is 0), and honest data never repeats a set member or dict key (a repeated one
/// counts again).
const MAX_SAME_HASH: u32 = 32;

/// Set members or dict keys counted by hash value (see [`MAX_SAME_HASH`]).
#[derive(Default)]
struct SameHash(HashMap<isize, u32>);

impl SameHash {
    fn add(&mut self, key: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
        let h = key
            .hash()
            .map_err(|_| not_data(&format!("an unhashable {what}")))?;
        let n = self.0.entry(h).or_default();
        *n += 1;
        if *n > MAX_SAME_HASH {
            return Err(not_data(&format!(
                "too many set members or dict keys with the same hash (more than \
                 {MAX_SAME_HASH} in one set or dict)"
            )));
        }
        Ok(())
    }
}

struct Decoder<'py> {
    py: Python<'py>,
    int: Bound<'py, PyType>,
    float: Bound<'py, PyType>,
}

impl<'py> Decoder<'py> {
    fn dec(&self, v: &Value, depth: usize) -> PyResult<PyObject> {
        if depth > MAX_DEPTH {
            return Err(not_data("nested too deeply"));
        }
        let py = self.py;
        Ok(match v {
            Value::Null => py.None(),
            Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
            Value::String(s) => PyString::new(py, s).into_any().unbind(),
            Value::Array(a) => PyList::new(py, self.many(a, depth)?)?.into_any().unbind(),
            Value::Number(_) => return Err(not_data("a bare number")),
            Value::Object(m) => {
                let (tag, x) = match m.iter().next() {
                    Some(kv) if m.len() == 1 => kv,
                    _ => return Err(not_data("an object that is not a single tag")),
                };
                self.tagged(tag, x, depth)?
            }
        })
    }

    fn tagged(&self, tag: &str, x: &Value, depth: usize) -> PyResult<PyObject> {
        let py = self.py;
        Ok(match tag {
            "i" => {
                let s = text(x)?;
                let digits = s.strip_prefix('-').unwrap_or(s);
                if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err(not_data("bad integer"));
                }
                // Most ints fit a machine word; the others go through int(s, 16), linear in
                // their length (a power-of-two base, no quadratic decimal conversion).
                match (digits.len() <= 15).then(|| i64::from_str_radix(s, 16)) {
                    Some(Ok(n)) => n.into_pyobject(py)?.into_any().unbind(),
                    _ => self.int.call1((s, 16))?.unbind(),
                }
            }
            "f" => {
                let s = text(x)?;
                let ok = s.len() <= 40
                    && s.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c));
                if !ok {
                    return Err(not_data("bad float"));
                }
                self.float
                    .call1((s,))
                    .map_err(|_| not_data("bad float"))?
                    .unbind()
            }
            "b" => PyBytes::new(py, &unhex(text(x)?)?).into_any().unbind(),
            "su" => PyBytes::new(py, &unhex(text(x)?)?)
                .call_method1("decode", ("utf-8", "surrogatepass"))
                .map_err(|_| not_data("bad string"))?
                .unbind(),
            "t" => PyTuple::new(py, self.many(array(x)?, depth)?)?
                .into_any()
                .unbind(),
            "s" => PySet::new(py, self.members(array(x)?, depth)?)?
                .into_any()
                .unbind(),
            "fs" => PyFrozenSet::new(py, self.members(array(x)?, depth)?)?
                .into_any()
                .unbind(),
            "d" => {
                let pairs = x
                    .as_array()
                    .ok_or_else(|| not_data("a dict that is not a list of pairs"))?;
                let d = PyDict::new(py);
                let mut keys = SameHash::default();
                for p in pairs {
                    match p {
                        Value::Array(kv) if kv.len() == 2 => {
                            let k = self.dec(&kv[0], depth + 1)?.into_bound(py);
                            keys.add(&k, "dict key")?;
                            let val = self.dec(&kv[1], depth + 1)?;
                            d.set_item(k, val)?;
                        }
                        _ => return Err(not_data("a dict entry that is not a pair")),
                    }
                }
                d.into_any().unbind()
            }
            other => return Err(not_data(&format!("unknown tag '{other}'"))),
        })
    }

    fn many(&self, a: &[Value], depth: usize) -> PyResult<Vec<PyObject>> {
        a.iter().map(|y| self.dec(y, depth + 1)).collect()
    }

    /// A set's members, each checked hashable and not one too many with its hash.
    fn members(&self, a: &[Value], depth: usize) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let mut hashes = SameHash::default();
        let mut out = Vec::with_capacity(a.len());
        for y in a {
            let m = self.dec(y, depth + 1)?.into_bound(self.py);
            hashes.add(&m, "set member")?;
            out.push(m);
        }
        Ok(out)
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode, m)?)?;
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    warm::register(m)?;
    Ok(())
}
