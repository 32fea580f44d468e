//! The one configuration schema every front end maps to: CLI flags, TOML policy files, the
//! Python `SandboxConfig` (as JSON). It keeps the old pysandbox's vocabulary (features,
//! `allow_module`, `allow_path`) and resolves to a [`JailSpec`] (the OS boundary) plus the
//! configuration of the in-interpreter guard (`bootstrap/guard.py`), which only shapes what code
//! sees: imports and builtins. The guard is not a security layer and nothing here relies on it.

use crate::interp;
use crate::jail::{JailSpec, Network};
use crate::limits::{self, Limits};
use crate::packages;
use crate::paths;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Flags every sandboxed interpreter starts with: isolated mode (no environment variables, no
/// user site, no script directory on `sys.path`), no `site` import, no `.pyc` writes.
pub const PYTHON_FLAGS: [&str; 3] = ["-I", "-S", "-B"];

/// Smallest address-space limit accepted: CPython 3.11 does not start in much less.
pub const MIN_MEMORY: u64 = 32 * 1024 * 1024;

/// Process limit the `threads` and `subprocess` features raise a limit of 1 to.
pub const FEATURE_PROCESSES: u32 = 32;

/// Address-space limit of the `full` preset unless one is given. numpy, pandas and matplotlib
/// map ~200 MB before any data (their libraries, OpenBLAS' 32 MB buffer; measured with
/// `crates/cli/tests/packages.rs`), so the old pysandbox's 250 MB left them ~50 MB; this leaves
/// them about the room 250 MB leaves plain CPython (~230 MB).
pub const FULL_MEMORY: u64 = 512 * 1024 * 1024;

/// A pysandbox feature. The names are the old pysandbox's, plus `network`, `subprocess`, `threads`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    Codecs,
    Datetime,
    DebugSandbox,
    Encodings,
    Exit,
    Future,
    Hashlib,
    Help,
    Interpreter,
    Itertools,
    Math,
    Network,
    Random,
    Regex,
    Site,
    Stderr,
    Stdin,
    Stdout,
    Subprocess,
    Threads,
    Time,
    Traceback,
    Unicodedata,
}

/// What one feature grants.
struct FeatureDef {
    feature: Feature,
    name: &'static str,
    doc: &'static str,
    /// Features it turns on as well (as in pysandbox).
    requires: &'static [Feature],
    /// Modules importable by untrusted code; `Some(symbols)` limits what the module shows.
    modules: &'static [(&'static str, Option<&'static [&'static str]>)],
    /// Builtins it restores.
    builtins: &'static [&'static str],
}

use Feature as F;

const FEATURES: &[FeatureDef] = &[
    FeatureDef {
        feature: F::Codecs,
        name: "codecs",
        doc: "the codecs module",
        requires: &[],
        modules: &[("codecs", None)],
        builtins: &[],
    },
    FeatureDef {
        feature: F::Datetime,
        name: "datetime",
        doc: "the datetime module",
        requires: &[],
        modules: &[("datetime", None)],
        builtins: &[],
    },
    FeatureDef {
        feature: F::DebugSandbox,
        name: "debug_sandbox",
        doc: "kept for compatibility: tracebacks always show the code's own frames",
        requires: &[F::Traceback],
        modules: &[],
        builtins: &[],
    },
    FeatureDef {
        feature: F::Encodings,
        name: "encodings",
        doc: "the encodings package",
        requires: &[F::Codecs],
        modules: &[("encodings", None)],
        builtins: &[],
    },
    FeatureDef {
        feature: F::Exit,
        name: "exit",
        doc: "exit(), quit() and sys.exit()",
        requires: &[],
        modules: &[("sys", Some(&["exit"]))],
        builtins: &["exit", "quit"],
    },
    FeatureDef {
        feature: F::Future,
        name: "future",
        doc: "from __future__ import ...",
        requires: &[],
        modules: &[("__future__", None)],
        builtins: &[],
    },
    FeatureDef {
        feature: F::Hashlib,
        name: "hashlib",
        doc: "the hashlib module",
        requires: &[],
        modules: &[("hashlib", None)],
        builtins: &[],
    },
    FeatureDef {
        feature: F::Help,
        name: "help",
        doc: "help() and the pydoc module",
        requires: &[F::Regex],
        modules: &[("pydoc", None)],
        builtins: &["help"],
    },
    FeatureDef {
        feature: F::Interpreter,
        name: "interpreter",
        doc: "what an interactive console needs (used by `pysandbox repl`)",
        requires: &[
            F::Encodings,
            F::Exit,
            F::Site,
            F::Stdin,
            F::Stdout,
            F::Stderr,
            F::Traceback,
        ],
        modules: &[],
        builtins: &[],
    },
    FeatureDef {
        feature: F::Itertools,
        name: "itertools",
        doc: "the itertools module",
        requires: &[],
        modules: &[("itertools", None)],
        builtins: &[],
    },
    FeatureDef {
        feature: F::Math,
        name: "math",
        doc: "the math and cmath modules",
        requires: &[],
        modules: &[("math", None), ("cmath", None)],
        builtins: &[],
    },
    FeatureDef {
        feature: F::Network,
        name: "network",
        doc: "the host's network (no network namespace) and the socket modules",
        requires: &[],
        modules: &[
            ("socket", None),
            ("ssl", None),
            ("select", None),
            ("selectors", None),
            ("http", None),
            ("urllib", None),
            ("email", None),
            ("asyncio", None),
        ],
        builtins: &[],
    },
    FeatureDef {
        feature: F::Random,
        name: "random",
        doc: "the random module",
        requires: &[F::Hashlib, F::Math],
        modules: &[("random", None)],
        builtins: &[],
    },
    FeatureDef {
        feature: F::Regex,
        name: "regex",
        doc: "the re module",
        requires: &[],
        modules: &[("re", None)],
        builtins: &[],
    },
    FeatureDef {
        feature: F::Site,
        name: "site",
        doc: "the site module",
        requires: &[],
        modules: &[("site", None)],
        builtins: &[],
    },
    FeatureDef {
        feature: F::Stderr,
        name: "stderr",
        doc: "sys.stderr (output is always captured by the supervisor; kept for compatibility)",
        requires: &[],
        modules: &[("sys", Some(&["stderr"]))],
        builtins: &[],
    },
    FeatureDef {
        feature: F::Stdin,
        name: "stdin",
        doc: "the caller's input reaches the code: sys.stdin and input()",
        requires: &[],
        modules: &[("sys", Some(&["stdin"]))],
        builtins: &["input"],
    },
    FeatureDef {
        feature: F::Stdout,
        name: "stdout",
        doc: "sys.stdout (output is always captured by the supervisor; kept for compatibility)",
        requires: &[],
        modules: &[("sys", Some(&["stdout"]))],
        builtins: &[],
    },
    FeatureDef {
        feature: F::Subprocess,
        name: "subprocess",
        doc: "starting programs (execve) and the subprocess and os modules",
        requires: &[],
        modules: &[
            ("subprocess", None),
            ("os", None),
            ("signal", None),
            ("shlex", None),
        ],
        builtins: &[],
    },
    FeatureDef {
        feature: F::Threads,
        name: "threads",
        doc: "threads: the threading, queue and concurrent.futures modules",
        requires: &[],
        modules: &[
            ("threading", None),
            ("_thread", None),
            ("queue", None),
            ("concurrent", None),
        ],
        builtins: &[],
    },
    FeatureDef {
        feature: F::Time,
        name: "time",
        doc: "the time module without sleep(), strptime() and tzset()",
        requires: &[],
        modules: &[("time", None)],
        builtins: &[],
    },
    FeatureDef {
        feature: F::Traceback,
        name: "traceback",
        doc: "compile(), exec(), eval() and the traceback module",
        requires: &[],
        modules: &[("traceback", None), ("linecache", None)],
        builtins: &["compile", "exec", "eval"],
    },
    FeatureDef {
        feature: F::Unicodedata,
        name: "unicodedata",
        doc: "the unicodedata module (\\N{...} escapes)",
        requires: &[],
        modules: &[("unicodedata", None)],
        builtins: &[],
    },
];

/// Names of `time` hidden even with the `time` feature, as in pysandbox.
const TIME_HIDDEN: &[&str] = &["sleep", "strptime", "tzset"];

/// Builtins the `default` preset withholds unless a feature (or an allowed path, for `open`)
/// restores them.
const GUARDED_BUILTINS: &[&str] = &[
    "open",
    "compile",
    "exec",
    "eval",
    "input",
    "exit",
    "quit",
    "help",
    "breakpoint",
];

impl Feature {
    fn def(self) -> &'static FeatureDef {
        FEATURES
            .iter()
            .find(|d| d.feature == self)
            .expect("every feature has a definition")
    }

    pub fn name(self) -> &'static str {
        self.def().name
    }

    pub fn doc(self) -> &'static str {
        self.def().doc
    }

    pub fn requires(self) -> &'static [Feature] {
        self.def().requires
    }

    pub fn all() -> impl Iterator<Item = Feature> {
        FEATURES.iter().map(|d| d.feature)
    }

    /// "codecs, datetime, ...": for error messages.
    pub fn names() -> String {
        FEATURES
            .iter()
            .map(|d| d.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Feature {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        FEATURES
            .iter()
            .find(|d| d.name == s)
            .map(|d| d.feature)
            .ok_or_else(|| PolicyError::UnknownFeature(s.to_string()))
    }
}

impl Serialize for Feature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Feature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A starting point that features, modules and paths add to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The old pysandbox's defaults: no imports beyond what features and `allow_module` grant,
    /// restricted builtins, no file access beyond the interpreter, no network.
    #[default]
    Default,
    /// The whole standard library importable, all builtins, threads allowed.
    Stdlib,
    /// `stdlib` plus the interpreter's site-packages, read-only.
    Full,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Default => "default",
            Preset::Stdlib => "stdlib",
            Preset::Full => "full",
        }
    }

    /// Features the preset turns on.
    fn features(self) -> &'static [Feature] {
        match self {
            Preset::Default => &[],
            Preset::Stdlib | Preset::Full => &[
                F::Codecs,
                F::Datetime,
                F::Encodings,
                F::Exit,
                F::Future,
                F::Hashlib,
                F::Help,
                F::Itertools,
                F::Math,
                F::Random,
                F::Regex,
                F::Site,
                F::Stderr,
                F::Stdout,
                F::Threads,
                F::Time,
                F::Traceback,
                F::Unicodedata,
            ],
        }
    }
}

impl FromStr for Preset {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, PolicyError> {
        match s {
            "default" => Ok(Preset::Default),
            "stdlib" => Ok(Preset::Stdlib),
            "full" => Ok(Preset::Full),
            _ => Err(PolicyError::Invalid {
                field: "preset".into(),
                value: s.into(),
                expected: "one of: default, stdlib, full".into(),
            }),
        }
    }
}

/// An invalid policy, refused before anything runs.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("unknown feature '{0}'; valid features: {names}", names = Feature::names())]
    UnknownFeature(String),
    #[error("invalid {field} '{value}': expected {expected}")]
    Invalid {
        field: String,
        value: String,
        expected: String,
    },
    #[error("{field}: path '{path}' does not exist")]
    MissingPath { field: String, path: PathBuf },
    /// Not a `#[source]`: the message already says it all (no repeat in an error chain).
    #[error("{field}: {error}")]
    Path {
        field: String,
        error: paths::PathError,
    },
    #[error("conflicting options: {0}")]
    Conflict(String),
    #[error("policy file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{0}")]
    Parse(String),
    #[error("finding the Python interpreter: {0}")]
    Interpreter(#[from] interp::InterpError),
}

/// pysandbox's `SandboxConfig`, as data.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub preset: Preset,
    /// Features on top of the preset's (dependencies follow).
    pub features: BTreeSet<Feature>,
    /// Modules imported before the code: once by a warm worker's zygote (every request child
    /// finds them in `sys.modules`), before the code of a cold run (the same state on every
    /// path). Only modules the policy lets the code import.
    pub preload: Vec<String>,
    /// Code run once after the preloads, where they are (a warm worker's zygote; before the code
    /// of a cold run), in a namespace of its own: it takes first-use costs (lazy imports,
    /// caches, a font) that every request would pay otherwise. The host's, not the code's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup: Option<String>,
    /// `allow_module(name, *symbols)`: an empty list allows the whole module.
    pub modules: BTreeMap<String, Vec<String>>,
    /// Host paths readable at the same place inside (`allow_path`).
    pub allow_read: Vec<PathBuf>,
    /// Host paths writable at the same place inside.
    pub allow_write: Vec<PathBuf>,
    /// `none` or `host`; unset: `host` if the `network` feature is on, else `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    pub limits: Limits,
    /// Python's recursion limit for the untrusted code; unset: the interpreter's (1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recursion_limit: Option<u32>,
    /// Environment variables the code sees (nothing of the host's otherwise).
    pub env: BTreeMap<String, String>,
    /// The interpreter; unset: `$PYSANDBOX_PYTHON`, then `python3.11`, `python3` on PATH.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python: Option<PathBuf>,
    /// Set when the process limit was given explicitly (a file's `limits.processes`, a flag):
    /// the `threads` and `subprocess` features then leave it as it is.
    #[serde(skip)]
    pub processes_pinned: bool,
    /// Set when the memory limit was given explicitly: the `full` preset then leaves it as it
    /// is (see [`FULL_MEMORY`]).
    #[serde(skip)]
    pub memory_pinned: bool,
}

/// A policy turned into what runs: the jail, and the guard's configuration (if any).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub spec: JailSpec,
    /// The guard's configuration; `None` when there is nothing to shape (the fast path).
    pub guard: Option<GuardConfig>,
    /// Whether the caller's input may reach the code (the `stdin` feature).
    pub stdin: bool,
    pub features: BTreeSet<Feature>,
    /// The policy's `preload` (the guard's configuration imports them).
    pub preload: Vec<String>,
}

/// The guard's configuration (`_pysandbox_guard` in `bootstrap/support.py`): data only. Kept as
/// a value: a cold run hands it over marshalled ([`GuardConfig::encoded`]) without writing and
/// parsing JSON again (about 0.2 M instructions of every guarded cold run); a warm worker's
/// configuration carries it as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig(serde_json::Value);

impl GuardConfig {
    pub fn value(&self) -> &serde_json::Value {
        &self.0
    }

    /// The configuration as JSON text.
    pub fn json(&self) -> String {
        self.0.to_string()
    }

    /// What a cold run puts on the guard's descriptor: the configuration marshalled behind
    /// [`crate::pymarshal::MAGIC`] (the interpreter reads that without loading a module), or
    /// the JSON where marshal cannot hold a value.
    pub fn encoded(&self) -> Vec<u8> {
        crate::pymarshal::encode(&self.0).map_or_else(
            || self.json().into_bytes(),
            |m| [&crate::pymarshal::MAGIC[..], &m].concat(),
        )
    }
}

impl Serialize for GuardConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.json())
    }
}

impl<'de> Deserialize<'de> for GuardConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text)
            .map(GuardConfig)
            .map_err(serde::de::Error::custom)
    }
}

impl Policy {
    pub fn from_toml_str(text: &str) -> Result<Policy, PolicyError> {
        // Syntax first (with a line and column), then the schema (with the key's path).
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            PolicyError::Parse(e.message().to_string() + &location(text, e.span()))
        })?;
        let given = |key: &str| table.get("limits").and_then(|l| l.get(key)).is_some();
        let (processes, memory) = (given("processes"), given("memory"));
        let mut p: Policy = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| schema_error(&e))?;
        p.processes_pinned = processes;
        p.memory_pinned = memory;
        Ok(p)
    }

    pub fn from_json_str(text: &str) -> Result<Policy, PolicyError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let mut p: Policy =
            serde_path_to_error::deserialize(&mut de).map_err(|e| schema_error(&e))?;
        de.end().map_err(|e| PolicyError::Parse(e.to_string()))?;
        let value = serde_json::from_str::<serde_json::Value>(text).ok();
        let given = |key: &str| {
            value
                .as_ref()
                .and_then(|v| v.get("limits")?.get(key))
                .is_some()
        };
        p.processes_pinned = given("processes");
        p.memory_pinned = given("memory");
        Ok(p)
    }

    /// Read a policy file (TOML, or JSON if it ends in `.json`).
    pub fn from_file(path: &Path) -> Result<Policy, PolicyError> {
        let file_err = |message: String| PolicyError::File {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            Policy::from_json_str(&text)
        } else {
            Policy::from_toml_str(&text)
        };
        parsed.map_err(|e| file_err(e.to_string()))
    }

    pub fn to_toml_string(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot show the policy: {e}\n"))
    }

    /// pysandbox's `config.enable(name)`.
    pub fn enable(&mut self, name: &str) -> Result<(), PolicyError> {
        self.features.insert(name.parse()?);
        Ok(())
    }

    /// pysandbox's `allowModule(name, *symbols)`: no symbols allows the whole module. Symbols add
    /// up over calls; allowing the whole module wins.
    pub fn allow_module(&mut self, name: &str, symbols: &[&str]) -> Result<(), PolicyError> {
        check_module_name("allow_module", name)?;
        for s in symbols {
            check_identifier("allow_module symbol", s)?;
        }
        let entry = self.modules.entry(name.to_string());
        match entry {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(symbols.iter().map(|s| s.to_string()).collect());
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                if o.get().is_empty() || symbols.is_empty() {
                    o.get_mut().clear();
                } else {
                    o.get_mut().extend(symbols.iter().map(|s| s.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Add modules to `preload` (each once, in order).
    pub fn preload_modules<S: AsRef<str>>(&mut self, names: &[S]) -> Result<(), PolicyError> {
        for n in names {
            let n = n.as_ref().trim();
            check_module_name("preload", n)?;
            if !self.preload.iter().any(|p| p == n) {
                self.preload.push(n.to_string());
            }
        }
        Ok(())
    }

    /// Every preload is a module name the code may import: with the `default` preset, one a
    /// feature or `allow_module` grants (the module or a package holding it, as the guard
    /// decides); the `stdlib` and `full` presets do not restrict imports. Whether the module
    /// exists is the import's business: a worker that cannot import it refuses to start, a cold
    /// run stops before the code.
    fn check_preload(&self) -> Result<(), PolicyError> {
        for name in &self.preload {
            check_module_name("preload", name)?;
        }
        if self.preset != Preset::Default {
            return Ok(());
        }
        let features = self.effective_features();
        let granted = |m: &str| {
            self.modules.contains_key(m)
                || features
                    .iter()
                    .any(|f| f.def().modules.iter().any(|(g, _)| *g == m))
        };
        for name in &self.preload {
            let mut prefixes = name.match_indices('.').map(|(i, _)| &name[..i]);
            if granted(name) || prefixes.any(granted) {
                continue;
            }
            let top = name.split('.').next().unwrap_or(name);
            let feature = FEATURES
                .iter()
                .find(|d| d.modules.iter().any(|(g, _)| *g == top || *g == name));
            let fix = match feature {
                Some(d) => format!("enable the '{}' feature, which grants it", d.name),
                None => format!(
                    "allow it too (--allow-module {name}, [modules] {name} = [], \
                     allow_module('{name}'))"
                ),
            };
            return Err(PolicyError::Invalid {
                field: "preload".into(),
                value: name.clone(),
                expected: format!(
                    "a module the policy lets the code import: with the 'default' preset, \
                     {fix}, or use the 'stdlib' or 'full' preset"
                ),
            });
        }
        Ok(())
    }

    /// `--allow-module math:sqrt,pi` or `--allow-module json`.
    pub fn allow_module_spec(&mut self, spec: &str) -> Result<(), PolicyError> {
        let (name, symbols) = match spec.split_once(':') {
            Some((n, s)) => (n, s.split(',').filter(|s| !s.is_empty()).collect()),
            None => (spec, Vec::new()),
        };
        self.allow_module(name, &symbols)
    }

    /// pysandbox's `allowPath(path)`: readable, read-only.
    pub fn allow_path(&mut self, path: impl Into<PathBuf>) {
        self.allow_read.push(path.into());
    }

    /// Features the preset and the policy turn on, with their dependencies.
    pub fn effective_features(&self) -> BTreeSet<Feature> {
        let mut todo: Vec<Feature> = self
            .preset
            .features()
            .iter()
            .chain(&self.features)
            .copied()
            .collect();
        let mut out = BTreeSet::new();
        while let Some(f) = todo.pop() {
            if out.insert(f) {
                todo.extend(f.requires());
            }
        }
        out
    }

    /// The environment the code gets: the policy's `env`, on top of the `full` preset's
    /// ([`packages::PACKAGE_ENV`]).
    pub fn effective_env(&self) -> BTreeMap<String, String> {
        if self.preset == Preset::Full {
            packages::environment(&self.env)
        } else {
            self.env.clone()
        }
    }

    pub fn effective_network(&self) -> Network {
        match self.network {
            Some(n) => n,
            None if self.features.contains(&Feature::Network) => Network::Host,
            None => Network::None,
        }
    }

    /// Limits after the features that need more than one process raised a limit of 1, and the
    /// `full` preset the default memory limit to [`FULL_MEMORY`].
    pub fn effective_limits(&self) -> Limits {
        let mut l = self.limits.clone();
        if !self.memory_pinned
            && self.preset == Preset::Full
            && l.memory == Some(limits::DEFAULT_MEMORY)
        {
            l.memory = Some(FULL_MEMORY);
        }
        let f = self.effective_features();
        if !self.processes_pinned
            && l.processes == 1
            && (f.contains(&F::Threads) || f.contains(&F::Subprocess))
        {
            l.processes = FEATURE_PROCESSES;
        }
        l
    }

    /// Refuse every invalid value, naming the field, the value and what is accepted.
    pub fn validate(&self) -> Result<(), PolicyError> {
        for (name, symbols) in &self.modules {
            check_module_name("allow_module", name)?;
            for s in symbols {
                check_identifier("allow_module symbol", s)?;
            }
        }
        self.check_preload()?;
        for (field, paths) in [
            ("allow_read", &self.allow_read),
            ("allow_write", &self.allow_write),
        ] {
            for p in paths {
                if !p.is_absolute() {
                    return Err(PolicyError::Invalid {
                        field: field.into(),
                        value: p.display().to_string(),
                        expected: "an absolute path".into(),
                    });
                }
                if p.parent().is_none() {
                    return Err(PolicyError::Invalid {
                        field: field.into(),
                        value: p.display().to_string(),
                        expected: "a path other than / (the jail's root is built, not shared)"
                            .into(),
                    });
                }
                if p.components().any(|c| c == std::path::Component::ParentDir) {
                    return Err(PolicyError::Invalid {
                        field: field.into(),
                        value: p.display().to_string(),
                        expected: "a path without '..'".into(),
                    });
                }
                // Opened as the jail will open it (no symlink followed in any component), so
                // that a path through a symlink is refused here, before anything runs.
                match paths::open_exact(p) {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {
                        return Err(PolicyError::MissingPath {
                            field: field.into(),
                            path: p.clone(),
                        })
                    }
                    Err(error) => {
                        return Err(PolicyError::Path {
                            field: field.into(),
                            error,
                        })
                    }
                }
            }
        }
        if crate::sys::geteuid() == 0 {
            for p in &self.allow_read {
                usable_by_sandbox_user("allow_read", p, 0o4)?;
            }
            for p in &self.allow_write {
                usable_by_sandbox_user("allow_write", p, 0o2)?;
            }
        }
        for p in &self.allow_read {
            if self.allow_write.contains(p) {
                return Err(PolicyError::Conflict(format!(
                    "'{}' is both in allow_read and allow_write; keep one",
                    p.display()
                )));
            }
        }
        if self.network == Some(Network::None) && self.features.contains(&F::Network) {
            return Err(PolicyError::Conflict(
                "the 'network' feature is on but network = \"none\"; drop one".into(),
            ));
        }
        if let Some(py) = &self.python {
            if !py.is_absolute() {
                return Err(PolicyError::Invalid {
                    field: "python".into(),
                    value: py.display().to_string(),
                    expected: "an absolute path to a Python interpreter".into(),
                });
            }
        }
        if let Some(r) = self.recursion_limit {
            if !(10..=1_000_000).contains(&r) {
                return Err(PolicyError::Invalid {
                    field: "recursion_limit".into(),
                    value: r.to_string(),
                    expected: "a number from 10 to 1000000".into(),
                });
            }
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(PolicyError::Invalid {
                    field: "env".into(),
                    value: k.clone(),
                    expected: "a variable name without '=' or NUL".into(),
                });
            }
            if v.contains('\0') {
                return Err(PolicyError::Invalid {
                    field: format!("env.{k}"),
                    value: v.escape_debug().to_string(),
                    expected: "a value without NUL".into(),
                });
            }
        }
        let l = &self.limits;
        let invalid = |field: &str, value: String, expected: &str| PolicyError::Invalid {
            field: format!("limits.{field}"),
            value,
            expected: expected.into(),
        };
        if l.wall.is_zero() {
            return Err(invalid(
                "wall",
                "0s".into(),
                "a positive duration such as 5s or 250ms",
            ));
        }
        if l.cpu.is_some_and(|c| c.is_zero()) {
            return Err(invalid(
                "cpu",
                "0s".into(),
                "a positive duration such as 1s",
            ));
        }
        if let Some(m) = l.memory {
            if m < MIN_MEMORY {
                return Err(invalid(
                    "memory",
                    limits::format_size(m),
                    "at least 32M (CPython needs that much address space to start), or none",
                ));
            }
        }
        if l.processes == 0 {
            return Err(invalid(
                "processes",
                "0".into(),
                "at least 1 (the interpreter itself)",
            ));
        }
        if l.open_files < 8 {
            return Err(invalid(
                "open_files",
                l.open_files.to_string(),
                "at least 8",
            ));
        }
        if l.tmp_size == 0 {
            return Err(invalid(
                "tmp_size",
                "0".into(),
                "a positive size such as 16M",
            ));
        }
        Ok(())
    }

    /// Validate, find the interpreter and build the jail and the guard's configuration.
    pub fn resolve(&self) -> Result<Resolved, PolicyError> {
        self.validate()?;
        let interpreter = interp::resolve(self.python.as_deref())?;
        Ok(self.resolve_with(interpreter))
    }

    /// [`Policy::resolve`] with an interpreter already found (validation is the caller's).
    pub fn resolve_with(&self, mut interpreter: interp::Interpreter) -> Resolved {
        let features = self.effective_features();
        // The libraries site-packages' extension modules link are bound with site-packages, and
        // only then: the view holds what the importable modules need.
        let site_libraries = std::mem::take(&mut interpreter.site_libraries);
        let site_packages = if self.preset == Preset::Full {
            interpreter.binds.extend(site_libraries);
            interpreter.site_packages.clone()
        } else {
            Vec::new()
        };
        let mut read_paths = self.allow_read.clone();
        read_paths.extend(site_packages.iter().filter(|p| p.is_dir()).cloned());
        let env = self.effective_env().into_iter().collect();
        let spec = JailSpec {
            interpreter,
            args: PYTHON_FLAGS.iter().map(|s| s.to_string()).collect(),
            env,
            limits: self.effective_limits(),
            read_paths,
            write_paths: self.allow_write.clone(),
            network: self.effective_network(),
            allow_exec: features.contains(&F::Subprocess),
            warm: false,
            zygote_library: None,
            inject: None,
            disabled: crate::layers::Layers::NONE,
        };
        let guard = self.guard_config(&features, &site_packages);
        Resolved {
            spec,
            guard,
            stdin: features.contains(&F::Stdin),
            features,
            preload: self.preload.clone(),
        }
    }

    /// The guard's configuration, or `None` if the guard would change nothing.
    fn guard_config(
        &self,
        features: &BTreeSet<Feature>,
        site_packages: &[PathBuf],
    ) -> Option<GuardConfig> {
        let restrict = self.preset == Preset::Default;
        if !restrict
            && self.recursion_limit.is_none()
            && site_packages.is_empty()
            && self.preload.is_empty()
            && self.warmup.is_none()
        {
            return None;
        }
        let mut modules: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
        let mut grant = |name: &str, symbols: Option<Vec<String>>| {
            let e = modules
                .entry(name.to_string())
                .or_insert_with(|| Some(BTreeSet::new()));
            match (e.as_mut(), symbols) {
                (Some(have), Some(more)) => have.extend(more),
                (_, None) => *e = None,
                (None, Some(_)) => {}
            }
        };
        let mut builtins: BTreeSet<&str> = BTreeSet::new();
        for f in features {
            let d = f.def();
            for (m, symbols) in d.modules {
                grant(
                    m,
                    symbols.map(|s| s.iter().map(|s| s.to_string()).collect()),
                );
            }
            builtins.extend(d.builtins);
        }
        for (m, symbols) in &self.modules {
            grant(
                m,
                if symbols.is_empty() {
                    None
                } else {
                    Some(symbols.clone())
                },
            );
        }
        if !self.allow_read.is_empty() || !self.allow_write.is_empty() {
            builtins.insert("open");
        }
        let blocked: BTreeMap<&str, String> = GUARDED_BUILTINS
            .iter()
            .filter(|b| !builtins.contains(*b))
            .map(|b| (*b, builtin_hint(b)))
            .collect();
        let mut hints: BTreeMap<&str, &str> = BTreeMap::new();
        for d in FEATURES {
            for (m, _) in d.modules {
                hints.entry(m).or_insert(d.name);
            }
        }
        let hidden: BTreeMap<&str, &[&str]> = [("time", TIME_HIDDEN)].into_iter().collect();
        let cfg = serde_json::json!({
            "restrict": restrict,
            "modules": modules,
            "hidden": hidden,
            "hints": hints,
            "blocked": if restrict { blocked } else { BTreeMap::new() },
            "exit": features.contains(&F::Exit),
            "recursion_limit": self.recursion_limit,
            "site_packages": site_packages,
            "preload": self.preload,
            "warmup": self.warmup,
        });
        Some(GuardConfig(cfg))
    }
}

/// Started as root, the jail runs as the host's uid 65534 (it never owns root's files), so an
/// allowed path must be readable (`want` 0o4) or writable (0o2) by that user; say so before
/// running rather than fail inside.
fn usable_by_sandbox_user(field: &str, p: &Path, want: u32) -> Result<(), PolicyError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(m) = std::fs::metadata(p) else {
        return Ok(());
    };
    let id = crate::jail::INSIDE_ID;
    let mode = m.mode();
    let bits = if m.uid() == id {
        (mode >> 6) & 7
    } else if m.gid() == id {
        (mode >> 3) & 7
    } else {
        mode & 7
    };
    if bits & want != 0 {
        return Ok(());
    }
    let (verb, fix) = if want == 0o2 {
        ("write", format!("chown {id} {}", p.display()))
    } else {
        ("read", format!("chmod o+r {}", p.display()))
    };
    Err(PolicyError::Invalid {
        field: field.into(),
        value: p.display().to_string(),
        expected: format!(
            "a path the sandbox's user can {verb}: run as root, pysandbox runs the code as uid \
             {id} (nobody); `{fix}` or run pysandbox as an ordinary user"
        ),
    })
}

fn builtin_hint(name: &str) -> String {
    let how = match name {
        "open" => "allow a path (allow_path, --allow-read or --allow-write)",
        "compile" | "exec" | "eval" => "enable the 'traceback' feature",
        "input" => "enable the 'stdin' feature",
        "exit" | "quit" => "enable the 'exit' feature",
        "help" => "enable the 'help' feature",
        _ => "use the 'stdlib' preset",
    };
    format!("{name}() blocked by the sandbox: {how}")
}

fn check_identifier(field: &str, s: &str) -> Result<(), PolicyError> {
    let mut chars = s.chars();
    let ok = chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(PolicyError::Invalid {
            field: field.into(),
            value: s.into(),
            expected: "a Python identifier".into(),
        })
    }
}

fn check_module_name(field: &str, name: &str) -> Result<(), PolicyError> {
    if name.split('.').all(|p| check_identifier("x", p).is_ok()) {
        Ok(())
    } else {
        Err(PolicyError::Invalid {
            field: field.into(),
            value: name.into(),
            expected: "a module name such as 'math' or 'xml.etree'".into(),
        })
    }
}

fn schema_error<E: fmt::Display>(e: &serde_path_to_error::Error<E>) -> PolicyError {
    let path = e.path().to_string();
    if path == "." {
        PolicyError::Parse(e.inner().to_string())
    } else {
        PolicyError::Parse(format!("{path}: {}", e.inner()))
    }
}

/// " (line L, column C)" for a parse error's span.
fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else {
        return String::new();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(" (line {line}, column {col})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_dependencies_follow_pysandbox() {
        let mut p = Policy::default();
        p.enable("random").unwrap();
        let f = p.effective_features();
        assert!(f.contains(&F::Hashlib) && f.contains(&F::Math));
        let mut p = Policy::default();
        p.enable("interpreter").unwrap();
        let f = p.effective_features();
        for need in [
            F::Encodings,
            F::Codecs,
            F::Exit,
            F::Site,
            F::Stdin,
            F::Stdout,
            F::Stderr,
            F::Traceback,
        ] {
            assert!(f.contains(&need), "{need} missing");
        }
        let mut p = Policy::default();
        p.enable("help").unwrap();
        assert!(p.effective_features().contains(&F::Regex));
    }

    #[test]
    fn unknown_feature_lists_valid_names() {
        let e = Policy::default().enable("sockets").unwrap_err().to_string();
        assert!(e.contains("unknown feature 'sockets'"), "{e}");
        assert!(e.contains("math") && e.contains("unicodedata"), "{e}");
        let e = Policy::from_toml_str("features = [\"nope\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown feature 'nope'"), "{e}");
    }

    /// Site-packages' libraries and environment come with the `full` preset only.
    #[test]
    fn full_preset_binds_site_libraries_and_sets_the_package_environment() {
        let interp = interp::resolve(None).unwrap();
        for preset in [Preset::Default, Preset::Stdlib, Preset::Full] {
            let p = Policy {
                preset,
                ..Policy::default()
            };
            let r = p.resolve_with(interp.clone());
            let full = preset == Preset::Full;
            let has_env = r
                .spec
                .env
                .iter()
                .any(|(k, v)| k == "MPLBACKEND" && v == "Agg");
            assert_eq!(has_env, full, "{preset:?}");
            for lib in &interp.site_libraries {
                let bound = r
                    .spec
                    .interpreter
                    .binds
                    .iter()
                    .any(|b| b.target == lib.target);
                assert_eq!(bound, full, "{preset:?} {lib:?}");
            }
            assert!(r.spec.interpreter.site_libraries.is_empty());
        }
    }

    #[test]
    fn full_preset_raises_the_default_memory_limit_only() {
        let mut p = Policy {
            preset: Preset::Full,
            ..Policy::default()
        };
        assert_eq!(p.effective_limits().memory, Some(FULL_MEMORY));
        p.preset = Preset::Stdlib;
        assert_eq!(p.effective_limits().memory, Some(limits::DEFAULT_MEMORY));
        // Given explicitly (a file, a flag), it stays, even at the default's value.
        let p = Policy::from_toml_str("preset = \"full\"\n[limits]\nmemory = \"250M\"").unwrap();
        assert_eq!(p.effective_limits().memory, Some(limits::DEFAULT_MEMORY));
        let p =
            Policy::from_json_str(r#"{"preset": "full", "limits": {"memory": "none"}}"#).unwrap();
        assert_eq!(p.effective_limits().memory, None);
        let p = Policy::from_json_str(r#"{"preset": "full"}"#).unwrap();
        assert_eq!(p.effective_limits().memory, Some(FULL_MEMORY));
    }

    #[test]
    fn toml_policy_reads_and_round_trips() {
        let text = r#"
preset = "stdlib"
features = ["network"]
preload = ["json", "xml.etree"]
allow_read = ["/etc"]
recursion_limit = 200
[modules]
math = ["sqrt", "pi"]
json = []
[limits]
wall = "2s"
memory = "128M"
output = "64K"
[env]
LANG = "C.UTF-8"
"#;
        let p = Policy::from_toml_str(text).unwrap();
        assert_eq!(p.preset, Preset::Stdlib);
        assert_eq!(p.limits.wall, std::time::Duration::from_secs(2));
        assert_eq!(p.limits.memory, Some(128 << 20));
        assert_eq!(p.modules["math"], vec!["sqrt", "pi"]);
        assert_eq!(p.preload, vec!["json", "xml.etree"]);
        assert_eq!(p.effective_network(), Network::Host);
        p.validate().unwrap();
        // A shown policy states every limit, so reading it back pins the process limit.
        let mut again = Policy::from_toml_str(&p.to_toml_string()).unwrap();
        assert!(again.processes_pinned && !p.processes_pinned);
        assert!(again.memory_pinned && p.memory_pinned);
        again.processes_pinned = false;
        assert_eq!(p, again);
        let json = serde_json::to_string(&p).unwrap();
        let mut again = Policy::from_json_str(&json).unwrap();
        again.processes_pinned = false;
        assert_eq!(again, p);
    }

    #[test]
    fn bad_input_names_field_and_accepted_values() {
        let cases: &[(&str, &[&str])] = &[
            ("colour = 1", &["unknown field", "colour"]),
            ("[limits]\nwall = \"5 parsecs\"", &["5 parsecs"]),
            ("[limits]\nprocesses = -1", &["processes"]),
            ("[limits]\nmemory = \"1K\"", &["limits.memory", "32M"]),
            ("[limits]\nwall = \"0s\"", &["limits.wall", "positive"]),
            (
                "allow_read = [\"relative/path\"]",
                &["allow_read", "absolute"],
            ),
            (
                "allow_read = [\"/no/such/path/for/pysandbox\"]",
                &["does not exist"],
            ),
            (
                "network = \"none\"\nfeatures = [\"network\"]",
                &["conflicting"],
            ),
            ("preset = \"everything\"", &["everything"]),
            ("[modules]\n\"os;rm\" = []", &["allow_module", "os;rm"]),
            ("recursion_limit = 1", &["recursion_limit", "10"]),
        ];
        for (text, needles) in cases {
            let e = Policy::from_toml_str(text)
                .and_then(|p| p.validate().map(|_| p))
                .expect_err(text)
                .to_string();
            for n in *needles {
                assert!(e.contains(n), "{text:?}: error {e:?} lacks {n:?}");
            }
        }
    }

    #[test]
    fn allow_module_spec_merges_symbols() {
        let mut p = Policy::default();
        p.allow_module_spec("math:sqrt,pi").unwrap();
        p.allow_module("math", &["cos"]).unwrap();
        assert_eq!(p.modules["math"], vec!["sqrt", "pi", "cos"]);
        p.allow_module("math", &[]).unwrap();
        assert!(p.modules["math"].is_empty());
        assert!(p.allow_module_spec("a b").is_err());
    }

    #[test]
    fn threads_raise_a_process_limit_of_one() {
        let mut p = Policy::default();
        assert_eq!(p.effective_limits().processes, 1);
        p.enable("threads").unwrap();
        assert_eq!(p.effective_limits().processes, FEATURE_PROCESSES);
        p.limits.processes = 4;
        assert_eq!(p.effective_limits().processes, 4);
    }

    #[test]
    fn preload_names_modules_the_policy_allows() {
        let refused = |p: &Policy| p.validate().unwrap_err().to_string();
        let mut p = Policy::default();
        p.preload_modules(&["numpy"]).unwrap();
        let e = refused(&p);
        for needle in [
            "preload",
            "'numpy'",
            "--allow-module numpy",
            "'full' preset",
        ] {
            assert!(e.contains(needle), "{e} lacks {needle}");
        }
        let mut p = Policy::default();
        p.preload_modules(&["socket"]).unwrap();
        assert!(refused(&p).contains("enable the 'network' feature"));
        // A feature's module, an allowed package's submodule, a module allowed with symbols.
        let mut p = Policy::default();
        p.enable("math").unwrap();
        p.allow_module("xml", &[]).unwrap();
        p.allow_module("json", &["dumps"]).unwrap();
        p.preload_modules(&["math", "xml.etree.ElementTree", "json", "math"])
            .unwrap();
        p.validate().unwrap();
        assert_eq!(p.preload, vec!["math", "xml.etree.ElementTree", "json"]);
        // A package's module does not allow the package.
        let mut p = Policy::default();
        p.allow_module("xml.etree", &[]).unwrap();
        p.preload_modules(&["xml"]).unwrap();
        assert!(refused(&p).contains("'xml'"));
        // The other presets do not restrict imports.
        for preset in [Preset::Stdlib, Preset::Full] {
            let mut p = Policy {
                preset,
                ..Policy::default()
            };
            p.preload_modules(&["numpy", "matplotlib.pyplot"]).unwrap();
            p.validate().unwrap();
        }
        // Names: from a file too.
        let e = Policy::from_toml_str("preset = \"full\"\npreload = [\"os;rm\"]")
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid preload 'os;rm'"), "{e}");
        assert!(Policy::default().preload_modules(&["a..b"]).is_err());
    }

    #[test]
    fn preload_reaches_the_guard() {
        let mut p = Policy {
            preset: Preset::Stdlib,
            ..Policy::default()
        };
        let interp = interp::resolve(None).unwrap();
        assert!(p.resolve_with(interp.clone()).guard.is_none());
        p.preload_modules(&["json"]).unwrap();
        let r = p.resolve_with(interp);
        let guard = r.guard.unwrap().value().clone();
        assert_eq!(guard["preload"], serde_json::json!(["json"]));
        assert_eq!(r.preload, vec!["json"]);
    }

    /// The parser never panics, whatever the input; errors are values.
    #[test]
    fn parser_survives_arbitrary_input() {
        let alphabet: Vec<char> = "[]=\"'{},.:#\n abcdefgilmnoprstuw0123456789-_KMGs/\\"
            .chars()
            .collect();
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let fragments = [
            "preset = ",
            "features = [",
            "[limits]\n",
            "wall = ",
            "memory = ",
            "\"stdlib\"",
            "\"1s\"",
            "[modules]\n",
            "math = []",
            "allow_read = [\"/\"]",
            "\n",
            "]",
            "\"",
            "-1",
            "1e99",
        ];
        for _ in 0..5000 {
            let mut s = String::new();
            for _ in 0..(next() % 12) {
                if next() % 2 == 0 {
                    s.push_str(fragments[(next() % fragments.len() as u64) as usize]);
                } else {
                    s.push(alphabet[(next() % alphabet.len() as u64) as usize]);
                }
            }
            if let Ok(p) = Policy::from_toml_str(&s) {
                let _ = p.validate();
                let _ = Policy::from_toml_str(&p.to_toml_string()).expect("shown policies parse");
            }
            let _ = Policy::from_json_str(&s);
        }
    }
}
