//! The result codec's decoder (`pysandbox._native`: `parse` then `decode_value`, what the warm
//! pool and `pysandbox.decode` run on a result the sandboxed code can write itself), in an
//! embedded CPython. Properties: no panic; anything refused is refused with ValueError (the
//! package turns it into `MalformedResult`); what decodes encodes again (`enc`) and decodes to
//! an equal value (NaNs aside: they equal nothing).
#![no_main]
use _native::{decode_value, enc, parse, Path};
use libfuzzer_sys::fuzz_target;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    pyo3::prepare_freethreaded_python();
    Python::with_gil(|py| {
        let Ok(v) = parse(text) else {
            return;
        };
        let obj = match decode_value(py, v) {
            Ok(o) => o.into_bound(py),
            Err(e) => {
                assert!(
                    e.is_instance_of::<PyValueError>(py),
                    "{text:?} raised {e} (not ValueError)"
                );
                return;
            }
        };
        let again = enc(&obj, &Path::Root("value"), 0)
            .unwrap_or_else(|e| panic!("{text:?} decoded to a value that does not encode: {e}"))
            .to_string();
        let obj2 = parse(&again)
            .and_then(|v| decode_value(py, v).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| panic!("{again:?} (from {text:?}) does not decode: {e}"))
            .into_bound(py);
        if !text.to_ascii_lowercase().contains("nan") {
            assert!(
                obj.eq(&obj2).unwrap_or(false),
                "{text:?} -> {again:?}: not equal"
            );
        }
    });
});
