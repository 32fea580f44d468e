//! Resource limits of one sandboxed run, their defaults (in one place) and their human units.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Default wall-clock limit: the old pysandbox's `DEFAULT_TIMEOUT = 5.0`.
pub const DEFAULT_WALL: Duration = Duration::from_secs(5);
/// Default address-space limit: the old pysandbox's `max_memory` of 250 MB.
pub const DEFAULT_MEMORY: u64 = 250 * 1024 * 1024;
/// Default number of processes and threads the code may have, the interpreter included: 1 means
/// no fork and no threads, as in the old pysandbox (`RLIMIT_NPROC = 0` in its child).
pub const DEFAULT_PROCESSES: u32 = 1;
pub const DEFAULT_OPEN_FILES: u32 = 256;
pub const DEFAULT_FILE_SIZE: u64 = 16 * 1024 * 1024;
pub const DEFAULT_TMP_SIZE: u64 = 16 * 1024 * 1024;
/// Default bytes kept of each of stdout and stderr; the rest is drained and discarded.
pub const DEFAULT_OUTPUT: u64 = 1024 * 1024;

/// Files a run may send back (`--collect`): at most this many, and this many bytes in all.
pub const MAX_FILES_OUT: usize = 100;
pub const MAX_FILES_OUT_BYTES: usize = 32 * 1024 * 1024;
/// Files a run may be given (`--file`): at most this many (their bytes count in `/tmp`).
pub const MAX_FILES_IN: usize = 100;

/// Every limit of a run. Each one that trips is reported as a [`Limit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Wall clock, enforced by the supervisor killing the whole PID namespace.
    #[serde(with = "duration_text")]
    pub wall: Duration,
    /// CPU time (`RLIMIT_CPU`, whole seconds, rounded up); `None`: bounded by the wall clock only.
    #[serde(with = "opt_duration_text")]
    pub cpu: Option<Duration>,
    /// Address space in bytes (`RLIMIT_AS`); `None`: unlimited.
    #[serde(with = "opt_size_text")]
    pub memory: Option<u64>,
    /// Processes and threads, the interpreter included (`RLIMIT_NPROC` in the jail's own user
    /// namespace).
    pub processes: u32,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: u32,
    /// Largest file the code may write (`RLIMIT_FSIZE`).
    #[serde(with = "size_text")]
    pub file_size: u64,
    /// Size of the private tmpfs mounted at `/tmp`.
    #[serde(with = "size_text")]
    pub tmp_size: u64,
    /// Bytes kept of each of stdout and stderr.
    #[serde(with = "size_text")]
    pub output: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall: DEFAULT_WALL,
            cpu: None,
            memory: Some(DEFAULT_MEMORY),
            processes: DEFAULT_PROCESSES,
            open_files: DEFAULT_OPEN_FILES,
            file_size: DEFAULT_FILE_SIZE,
            tmp_size: DEFAULT_TMP_SIZE,
            output: DEFAULT_OUTPUT,
        }
    }
}

/// A limit that tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Wall,
    Cpu,
    Memory,
    Processes,
    OpenFiles,
    FileSize,
    TmpSize,
    Output,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::Wall => "wall",
            Limit::Cpu => "cpu",
            Limit::Memory => "memory",
            Limit::Processes => "processes",
            Limit::OpenFiles => "open_files",
            Limit::FileSize => "file_size",
            Limit::TmpSize => "tmp_size",
            Limit::Output => "output",
        }
    }

    /// The CLI flag that raises this limit, for error messages.
    pub fn flag(self) -> &'static str {
        match self {
            Limit::Wall => "--timeout",
            Limit::Cpu => "--cpu-time",
            Limit::Memory => "--memory",
            Limit::Processes => "--processes",
            Limit::OpenFiles => "--open-files",
            Limit::FileSize => "--file-size",
            Limit::TmpSize => "--tmp-size",
            Limit::Output => "--max-output",
        }
    }

    pub fn from_name(name: &str) -> Option<Limit> {
        Some(match name {
            "wall" => Limit::Wall,
            "cpu" => Limit::Cpu,
            "memory" => Limit::Memory,
            "processes" => Limit::Processes,
            "open_files" => Limit::OpenFiles,
            "file_size" => Limit::FileSize,
            "tmp_size" => Limit::TmpSize,
            "output" => Limit::Output,
            _ => return None,
        })
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a SIGKILL the host did not send was the CPU limit's: `RLIMIT_CPU` has its hard limit
/// equal to the soft one, so the kernel kills at the limit (a warm child, PID 1 of its namespace,
/// cannot SIGKILL itself; a cold run's interpreter could, to misreport its own run). The CPU time the kernel reports afterwards
/// (`wait4`'s rusage, scaled from tick samples) can fall short of the time the limit measured:
/// 0.90 s for a 1 s limit was seen on a loaded machine; a quarter of the limit is allowed.
pub fn cpu_killed(limit: Option<Duration>, cpu_seconds: f64) -> bool {
    limit.is_some_and(|c| cpu_seconds >= c.as_secs_f64() * 0.75)
}

/// A value in human units that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} '{value}': expected {expected}")]
pub struct UnitError {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

const SIZE_EXPECTED: &str =
    "a size like 64K, 256M, 1G or a number of bytes (K, M, G are powers of 1024)";
const DURATION_EXPECTED: &str = "a duration like 250ms, 2s, 1.5s, 1m or a number of seconds";

fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (&s[..end], s[end..].trim())
}

/// Parse `64K`, `256M`, `1G`, `1.5M`, `4096`, `512B`, `2MiB` into bytes.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let err = || UnitError {
        what: "size",
        value: text.to_string(),
        expected: SIZE_EXPECTED,
    };
    let (num, unit) = split_number(text.trim());
    if num.is_empty() {
        return Err(err());
    }
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(err()),
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult).ok_or_else(err);
    }
    let f: f64 = num.parse().map_err(|_| err())?;
    let bytes = f * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes.round() as u64)
}

/// Parse `250ms`, `2s`, `1.5s`, `1m`, `3` (seconds) into a duration.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let err = || UnitError {
        what: "duration",
        value: text.to_string(),
        expected: DURATION_EXPECTED,
    };
    let (num, unit) = split_number(text.trim());
    if num.is_empty() {
        return Err(err());
    }
    let value: f64 = num.parse().map_err(|_| err())?;
    let secs = match unit.to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1000.0,
        "us" | "µs" => value / 1_000_000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(err()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| err())
}

/// `1048576` → `1M`, `65536` → `64K`, `1000` → `1000`.
pub fn format_size(bytes: u64) -> String {
    for (mult, suffix) in [(1u64 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")] {
        if bytes >= mult && bytes.is_multiple_of(mult) {
            return format!("{}{}", bytes / mult, suffix);
        }
    }
    bytes.to_string()
}

/// `5s`, `250ms`, `1.5s`.
pub fn format_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_nanos().is_multiple_of(1_000_000) && d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

macro_rules! text_serde {
    ($modname:ident, $ty:ty, $parse:path, $format:path) => {
        pub(crate) mod $modname {
            use serde::{Deserialize, Deserializer, Serializer};
            pub fn serialize<S: Serializer>(v: &$ty, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&$format(*v))
            }
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Raw {
                    Text(String),
                    Int(u64),
                    Float(f64),
                }
                match Raw::deserialize(d)? {
                    Raw::Text(t) => $parse(&t).map_err(serde::de::Error::custom),
                    Raw::Int(i) => $parse(&i.to_string()).map_err(serde::de::Error::custom),
                    Raw::Float(f) => $parse(&f.to_string()).map_err(serde::de::Error::custom),
                }
            }
        }
    };
}

text_serde!(
    size_text,
    u64,
    crate::limits::parse_size,
    crate::limits::format_size
);
text_serde!(
    duration_text,
    std::time::Duration,
    crate::limits::parse_duration,
    crate::limits::format_duration
);

macro_rules! opt_text_serde {
    ($modname:ident, $ty:ty, $parse:path, $format:path) => {
        pub(crate) mod $modname {
            use serde::{Deserialize, Deserializer, Serializer};
            pub fn serialize<S: Serializer>(v: &Option<$ty>, s: S) -> Result<S::Ok, S::Error> {
                match v {
                    Some(v) => s.serialize_str(&$format(*v)),
                    None => s.serialize_str("none"),
                }
            }
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$ty>, D::Error> {
                #[derive(Deserialize)]
                #[serde(untagged)]
                enum Raw {
                    Text(String),
                    Int(u64),
                    Float(f64),
                }
                let text = match Raw::deserialize(d)? {
                    Raw::Text(t) => t,
                    Raw::Int(i) => i.to_string(),
                    Raw::Float(f) => f.to_string(),
                };
                if text == "none" || text == "unlimited" {
                    return Ok(None);
                }
                $parse(&text).map(Some).map_err(serde::de::Error::custom)
            }
        }
    };
}

opt_text_serde!(
    opt_size_text,
    u64,
    crate::limits::parse_size,
    crate::limits::format_size
);
opt_text_serde!(
    opt_duration_text,
    std::time::Duration,
    crate::limits::parse_duration,
    crate::limits::format_duration
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64K").unwrap(), 65536);
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("1.5M").unwrap(), 1572864);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert_eq!(parse_size("2MiB").unwrap(), 2 << 20);
        for bad in ["", "M", "-1M", "12Q", "1..2M", "99999999999999999999T"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.to_string().contains("expected a size"), "{bad}: {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        for bad in ["", "s", "-2s", "2 parsecs", "nan"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for s in ["64K", "256M", "1G", "1000"] {
            assert_eq!(format_size(parse_size(s).unwrap()), s);
        }
        for d in ["5s", "250ms", "1.5s"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
    }

    #[test]
    fn limits_serde_uses_units() {
        let l = Limits::default();
        let json = serde_json::to_string(&l).unwrap();
        assert!(json.contains("\"wall\":\"5s\""), "{json}");
        assert!(json.contains("\"memory\":\"250M\""), "{json}");
        let back: Limits = serde_json::from_str(&json).unwrap();
        assert_eq!(back, l);
        let err = serde_json::from_str::<Limits>(r#"{"wall":"fast"}"#).unwrap_err();
        assert!(err.to_string().contains("invalid duration 'fast'"), "{err}");
        let err = serde_json::from_str::<Limits>(r#"{"walll":"1s"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
