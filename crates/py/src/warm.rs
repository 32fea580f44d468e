//! `pysandbox._native.WarmPool` and `WarmSession`: the Rust warm pool (`pysandbox_core::warm`)
//! for the Python package, so that a warm request costs the package one call with the GIL
//! released, not a Python-level protocol.
//!
//! `WarmPool.call` takes the package's exec/eval/call as Python values and gives the outcome back
//! as a dict, the API result decoded; a session's calls and outcomes cross as JSON text (the
//! shapes of `pysandbox_core::warm::Request` and `WarmOutcome`). Failures raise
//! `WarmFailure(kind, message)`, which the package turns into its own exception types.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pysandbox_core::judge::{self, Compare, JudgeError};
use pysandbox_core::policy::Policy;
use pysandbox_core::warm::{
    Pool, PoolOptions, Request, Session, SessionOptions, WarmError, WarmOutcome, WarmUp,
};
use serde_json::{Map, Value};
use std::sync::Mutex;
use std::time::Duration;

create_exception!(
    _native,
    WarmFailure,
    PyException,
    "A warm pool or session failed: args are (kind, message); kind is one of policy, setup, \
     busy, closed, ended, worker, isolation, request, malformed (the sandbox returned what is \
     not data), input (a judge's bad cases or compare mode: nothing ran)."
);

fn failure(kind: &str, message: String) -> PyErr {
    WarmFailure::new_err((kind.to_string(), message))
}

fn warm_failure(e: WarmError) -> PyErr {
    failure(warm_kind(&e), e.to_string())
}

fn warm_kind(e: &WarmError) -> &'static str {
    match e {
        WarmError::Policy(_) | WarmError::Refused(_) => "policy",
        WarmError::Start { .. } => "setup",
        WarmError::Busy(_) => "busy",
        WarmError::Closed => "closed",
        WarmError::SessionEnded(_) => "ended",
        WarmError::Worker(_) | WarmError::Hung(_) => "worker",
        WarmError::Isolation { .. } => "isolation",
    }
}

fn parse_policy(text: &str) -> PyResult<Policy> {
    let p = Policy::from_json_str(text).map_err(|e| failure("policy", e.to_string()))?;
    p.validate().map_err(|e| failure("policy", e.to_string()))?;
    Ok(p)
}

fn parse_request(text: &str) -> PyResult<Request> {
    serde_json::from_str(text).map_err(|e| failure("request", format!("bad request: {e}")))
}

fn encode(o: WarmOutcome) -> PyResult<String> {
    serde_json::to_string(&o).map_err(|e| failure("worker", format!("encoding the outcome: {e}")))
}

/// The outcome fields the package reads, as a dict (the keys of `pysandbox run --json`).
fn outcome_dict(py: Python<'_>, o: &WarmOutcome) -> PyResult<PyObject> {
    let r = &o.run;
    let d = PyDict::new(py);
    d.set_item("exit_code", r.exit_code)?;
    d.set_item("signal", r.signal)?;
    let limit = r
        .limit
        .and_then(|l| serde_json::to_value(l).ok())
        .and_then(|v| v.as_str().map(str::to_string));
    d.set_item("limit", limit)?;
    d.set_item("cpu_time", r.cpu_time)?;
    d.set_item("wall_time", r.wall_time)?;
    d.set_item("peak_memory", r.peak_memory)?;
    d.set_item("stdout", &r.stdout)?;
    d.set_item("stdout_truncated", r.stdout_truncated)?;
    d.set_item("stderr", &r.stderr)?;
    d.set_item("stderr_truncated", r.stderr_truncated)?;
    let name = |v: serde_json::Result<Value>| v.ok().and_then(|v| v.as_str().map(str::to_string));
    d.set_item("status", name(serde_json::to_value(r.status)))?;
    let error = match &r.error {
        None => py.None(),
        Some(e) => {
            let e_d = PyDict::new(py);
            e_d.set_item("type", &e.kind)?;
            e_d.set_item("message", &e.message)?;
            e_d.set_item("traceback", &e.traceback)?;
            e_d.into_any().unbind()
        }
    };
    d.set_item("error", error)?;
    let results = pyo3::types::PyList::empty(py);
    for x in &r.results {
        let item = PyDict::new(py);
        item.set_item("data", x.data.clone().into_pyobject(py)?)?;
        item.set_item("is_main_result", x.is_main_result)?;
        results.append(item)?;
    }
    d.set_item("results", results)?;
    d.set_item("files", r.files.clone().into_pyobject(py)?)?;
    d.set_item("files_truncated", r.files_truncated)?;
    Ok(d.into_any().unbind())
}

/// Warm workers shared by the threads of one `Sandbox(..., pool=True)`.
#[pyclass(frozen, weakref)]
pub struct WarmPool {
    pool: Pool,
    /// The policy's /tmp size, which bounds the files given.
    tmp_size: u64,
}

#[pymethods]
impl WarmPool {
    /// `judge`: a pool for [`WarmPool::judge`] only: the policy gets the `stdin` feature
    /// (`judge::policy`) and the children warm up the plain request path the cases take.
    #[new]
    #[pyo3(signature = (binary, policy, workers = None, max_queue = 1024, recycle_after = 10_000, judge = false))]
    fn new(
        py: Python<'_>,
        binary: &str,
        policy: &str,
        workers: Option<usize>,
        max_queue: usize,
        recycle_after: u64,
        judge: bool,
    ) -> PyResult<Self> {
        let mut policy = parse_policy(policy)?;
        let mut o = PoolOptions::new(binary);
        if let Some(n) = workers {
            o.workers = n.max(1);
        }
        o.max_queue = max_queue;
        o.recycle_after = recycle_after;
        o.warm_up = WarmUp::Api;
        if judge {
            policy = judge::policy(&policy);
            o.warm_up = WarmUp::Code;
        }
        let tmp_size = policy.effective_limits().tmp_size;
        let pool = py
            .allow_threads(|| Pool::new(policy, o))
            .map_err(warm_failure)?;
        Ok(WarmPool { pool, tmp_size })
    }

    /// The package's exec/eval/call in a fresh isolated child, without a text protocol on
    /// either side: `data` (names to values) is encoded here, the outcome comes back as a dict
    /// with the API result decoded. Returns `(outcome, payload, has_result, too_big)`: `payload`
    /// is the decoded result (`None` without one, or when it is longer than `max_result`).
    #[pyo3(signature = (op, code, stdin, data, max_result, files = None, collect = None, cell = false))]
    #[allow(clippy::too_many_arguments)]
    fn call(
        &self,
        py: Python<'_>,
        op: &str,
        code: &str,
        stdin: Option<&str>,
        data: &Bound<'_, PyDict>,
        max_result: usize,
        files: Option<Vec<(String, Vec<u8>)>>,
        collect: Option<Vec<String>>,
        cell: bool,
    ) -> PyResult<(PyObject, PyObject, bool, bool)> {
        let mut pairs = Vec::with_capacity(data.len());
        for (k, v) in data.iter() {
            let key: String = k.extract()?;
            let value = crate::enc(&v, &crate::Path::Root(&key), 0)?;
            pairs.push(Value::Array(vec![Value::String(key), value]));
        }
        let mut input = Map::new();
        input.insert("d".into(), Value::Array(pairs));
        let mut api = Map::new();
        api.insert("op".into(), Value::String(op.into()));
        api.insert("input".into(), Value::Object(input));
        let mut req = Request::new(None, code, stdin);
        req.api = Some(Value::Object(api));
        req.files = files.unwrap_or_default();
        req.collect = collect.unwrap_or_default();
        req.cell = cell;
        req.check(self.tmp_size).map_err(|e| failure("policy", e))?;
        // The result's JSON is parsed with the GIL released too; only building the Python
        // value needs it.
        let (out, parsed) = py
            .allow_threads(|| {
                let out = self.pool.run_request(&req)?;
                let parsed = match &out.result {
                    Some(text) if text.len() <= max_result => Some(crate::parse(text)),
                    _ => None,
                };
                Ok((out, parsed))
            })
            .map_err(warm_failure)?;
        let outcome = outcome_dict(py, &out)?;
        // Untrusted: anything but data is the sandbox's fault, not the caller's.
        let malformed = |e: String| {
            failure(
                "malformed",
                format!("the sandbox returned malformed data: {e}"),
            )
        };
        if let Some(why) = &out.report_error {
            return Err(malformed(format!("its report did not decode ({why})")));
        }
        let has_result = out.result.is_some() || out.result_truncated;
        let too_big =
            out.result_truncated || out.result.as_ref().is_some_and(|r| r.len() > max_result);
        let payload = match parsed {
            Some(Ok(v)) => crate::decode_value(py, v).map_err(|e| {
                if e.is_instance_of::<PyValueError>(py) {
                    malformed(e.value(py).to_string())
                } else {
                    e
                }
            })?,
            Some(Err(e)) => return Err(malformed(e)),
            None => py.None(),
        };
        Ok((outcome, payload, has_result, too_big))
    }

    /// Whether the code can read its standard input under this pool's policy (the `stdin`
    /// feature): what [`WarmPool::judge`] needs.
    #[getter]
    fn gives_stdin(&self) -> bool {
        judge::gives_stdin(self.pool.policy())
    }

    /// `code` against every case (`cases`: a JSON list of `{"stdin": ..., "expected": ...}`),
    /// each in a fresh child, spread over the workers (`pysandbox_core::judge`); the result as
    /// JSON text (`judge::JudgeResult`). Bad cases or compare mode fail with kind `input`
    /// before anything runs.
    #[pyo3(signature = (code, cases, compare = "exact"))]
    fn judge(&self, py: Python<'_>, code: &str, cases: &str, compare: &str) -> PyResult<String> {
        let input = |e: JudgeError| failure("input", e.to_string());
        let compare: Compare = compare.parse().map_err(input)?;
        let cases = judge::cases_from_json(cases, self.pool.policy()).map_err(input)?;
        let result = py
            .allow_threads(|| judge::judge(&self.pool, None, code, &cases, compare))
            .map_err(|e| match e {
                e if e.is_input() => input(e),
                JudgeError::NoStdin => failure("policy", e.to_string()),
                JudgeError::Check(source) => {
                    let kind = warm_kind(&source);
                    failure(kind, format!("checking the program: {source}"))
                }
                JudgeError::Sandbox { case, source } => {
                    failure(warm_kind(&source), format!("cases[{case}]: {source}"))
                }
                e => failure("worker", e.to_string()),
            })?;
        serde_json::to_string(&result)
            .map_err(|e| failure("worker", format!("encoding the result: {e}")))
    }

    /// Stop every worker; later runs fail with kind `closed`.
    fn close(&self, py: Python<'_>) {
        py.allow_threads(|| self.pool.shutdown());
    }

    /// Process ids of the idle workers' `pysandbox worker` processes.
    fn worker_pids(&self) -> Vec<u32> {
        self.pool.worker_pids()
    }
}

/// One stateful session (a worker of its own).
#[pyclass(frozen, weakref)]
pub struct WarmSession {
    session: Mutex<Session>,
    tmp_size: u64,
}

#[pymethods]
impl WarmSession {
    #[new]
    #[pyo3(signature = (binary, policy, idle, lifetime = 3600.0))]
    fn new(py: Python<'_>, binary: &str, policy: &str, idle: f64, lifetime: f64) -> PyResult<Self> {
        let policy = parse_policy(policy)?;
        let seconds = |what: &str, v: f64| {
            Duration::try_from_secs_f64(v.max(0.001))
                .map_err(|e| failure("request", format!("bad {what}: {e}")))
        };
        let tmp_size = policy.effective_limits().tmp_size;
        let mut opts = SessionOptions::new(seconds("idle timeout", idle)?);
        opts.lifetime = seconds("lifetime", lifetime)?;
        opts.warm_up = WarmUp::Api;
        let session = py
            .allow_threads(|| {
                Session::open_with_options(std::path::Path::new(binary), &policy, opts)
            })
            .map_err(warm_failure)?;
        Ok(WarmSession {
            session: Mutex::new(session),
            tmp_size,
        })
    }

    /// Run one request (JSON) in the session; the outcome as JSON.
    fn execute(&self, py: Python<'_>, request: &str) -> PyResult<String> {
        let req = parse_request(request)?;
        req.check(self.tmp_size).map_err(|e| failure("policy", e))?;
        let out = py
            .allow_threads(|| {
                self.session
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .execute_request(&req)
            })
            .map_err(warm_failure)?;
        encode(out)
    }

    #[getter]
    fn is_open(&self) -> bool {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_open()
    }

    fn close(&self, py: Python<'_>) {
        py.allow_threads(|| {
            self.session
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .close()
        });
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<WarmPool>()?;
    m.add_class::<WarmSession>()?;
    m.add("WarmFailure", m.py().get_type::<WarmFailure>())?;
    Ok(())
}
