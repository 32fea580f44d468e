//! Typed frames between the host, a warm worker's zygote and a request child (docs/protocol.md).
//!
//! Every message is one frame: a little-endian `u32` length, then that many bytes: a tag byte and
//! the fields of that kind, in order. Integers are little-endian; bytes and text are a `u32`
//! length and the bytes; an optional field is a byte 0 or 1, then the value. One Rust enum per
//! direction; nothing is ever searched for in a byte stream, and a frame that does not decode
//! ends the decoding of its stream (the bytes after it are never trusted).
//!
//! Which side writes what:
//! - [`ToZygote`]: host → zygote, one frame per `SOCK_SEQPACKET` packet on the control socket.
//! - [`FromZygote`]: zygote → host, same socket; [`FromZygote::Child`] carries descriptors.
//! - [`Request`]: host → child, on the child's request pipe (written by Rust, read by the
//!   bootstrap: `bootstrap/warm.py`).
//! - [`Report`]: child → host, on the child's report pipe (descriptor 4 of the code). Written by
//!   the bootstrap (`Limit`, `Result`, `Done`) and by the Rust isolation steps (`SetupFailed`),
//!   and by the code too if it wants: the code can misreport its own run, never the host's
//!   state (the host's clocks and the kernel's account of the process do not come from here).

use crate::limits::Limit;

/// Bumped whenever a frame's layout, the zygote's configuration (`warm::ZygoteConfig`) or the
/// library's entry points change; the zygote library refuses another version.
pub const VERSION: u32 = 8;

/// Frames longer than this are refused on every channel except a report's `Result`, which has
/// its own bound ([`ReportReader::new`]).
pub const MAX_FRAME: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("a frame of {0} bytes is longer than allowed")]
    TooLong(usize),
    #[error("an empty frame")]
    Empty,
    #[error("unknown frame tag {0}")]
    Tag(u8),
    #[error("a frame ended inside its fields")]
    Short,
    #[error("{0} bytes left over after a frame's fields")]
    Trailing(usize),
    #[error("a frame field that is not UTF-8 text")]
    Text,
    #[error("a bad value in a frame: {0}")]
    Value(&'static str),
}

/// Host → zygote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToZygote {
    /// Fork a session child (a mount namespace and `/tmp` of its own, kept for many calls);
    /// `cpu_seconds` bounds the CPU time of the whole session (`RLIMIT_CPU`, hard = soft).
    Session { cpu_seconds: u64 },
    /// How did child `seq` end? Answered with [`FromZygote::Exit`] once it has.
    Status { seq: u64 },
}

/// How a process ended, as `wait4` saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Exited(i32),
    Signaled(i32),
}

impl End {
    /// (exit code, signal): one of the two.
    pub fn code_and_signal(self) -> (Option<i32>, Option<i32>) {
        match self {
            End::Exited(c) => (Some(c), None),
            End::Signaled(s) => (None, Some(s)),
        }
    }
}

/// Zygote → host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromZygote {
    /// Modules are preloaded and the first request child (if any) is on its way.
    Ready,
    /// A new child, isolated or failing to be (its report says so); the packet carries the
    /// host's ends of its pipes and a pidfd: request (write), stdout, stderr, report (read),
    /// pidfd — [`CHILD_FDS`] descriptors in that order.
    Child { seq: u64, session: bool },
    /// The kernel's account of a child's end (`wait4`).
    Exit {
        seq: u64,
        end: End,
        cpu_micros: u64,
        maxrss_kib: u64,
    },
    /// The zygote cannot serve: `policy` when the configuration is refused, else setup.
    Failed { policy: bool, message: String },
}

/// Descriptors carried by [`FromZygote::Child`].
pub const CHILD_FDS: usize = 5;

/// Host → child: one request (a run, or a session call).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    pub code: Vec<u8>,
    /// The code's file name in tracebacks (empty: `<string>`).
    pub name: String,
    /// Standard input; `None`: nothing (`/dev/null`).
    pub stdin: Option<Vec<u8>>,
    /// The Python package's exec/eval/call data (JSON, see `bootstrap/support.py`).
    pub api: Option<Vec<u8>>,
    /// Files placed in the working directory before the code runs: relative name, content.
    pub files: Vec<(String, Vec<u8>)>,
    /// Files to send back after the run: glob patterns relative to the working directory.
    pub collect: Vec<String>,
    /// Cell mode (notebook semantics: the last expression's value and `display()` are results).
    pub cell: bool,
    /// Someone watches the output as it comes (a streaming caller): `sys.stdout` is
    /// line-buffered, so that each line reaches the host when it is printed. Encoded with
    /// `cell` in one flags byte (bit 0 cell, bit 1 live).
    pub live: bool,
    /// `sys.argv[1:]` of the code (a warm request; a cold run takes them on its command line).
    pub args: Vec<String>,
}

/// Child → host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The bootstrap saw this limit trip (from the exception the code got).
    Limit(Limit),
    /// The Python package's result: tagged JSON data (untrusted; decoded by the package).
    Result(Vec<u8>),
    /// The child's own account of the request it finished; the host does not wait for more.
    Done {
        exit: i32,
        cpu_micros: u64,
        maxrss_kib: u64,
    },
    /// An isolation step failed in the child: nothing of the request ran.
    SetupFailed { step: String, message: String },
    /// `pysandbox repl`: the state after an input line.
    Repl(ReplState),
    /// A file the run collected: its name (relative to the working directory) and content.
    File { name: String, data: Vec<u8> },
    /// Some files matched but were left out (count or size bounds).
    FilesTruncated,
    /// A rich output (cell mode): a MIME bundle as JSON `{"data": {...}, "is_main_result": b}`.
    Display(Vec<u8>),
    /// The code raised this exception (uncaught): type name, message, formatted traceback.
    Error {
        kind: String,
        message: String,
        traceback: String,
    },
    /// A traced warm child's phases (only when the pool asked for it: `PoolOptions::trace`,
    /// `make bench`), sent before `Done`. At most [`TRACE_MAX`] marks.
    Trace(Vec<Mark>),
}

/// One phase of a traced warm child: its name, how long it took and the page faults the child
/// took in it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mark {
    pub phase: String,
    pub nanos: u64,
    pub faults: u64,
}

/// The most marks a `Trace` frame may carry.
pub const TRACE_MAX: usize = 64;

/// Where a `pysandbox repl` session is after an input line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplState {
    /// Started, waiting for the first input.
    Ready,
    /// The statement is incomplete: more lines.
    More,
    /// The statement ran.
    Done,
    /// The code asked to leave (`exit()`).
    Exit,
}

/// A supervisor relaying a jail's streams as they arrive (`OutputMode::Relay`: the repl's
/// worker to its front process), each chunk tagged with the stream it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relay {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// Bytes of the report pipe (frames of their own, [`ReportReader`]).
    Report(Vec<u8>),
}

impl Relay {
    pub fn encode(&self) -> Vec<u8> {
        let (tag, data) = match self {
            Relay::Stdout(d) => (RELAY_STDOUT, d),
            Relay::Stderr(d) => (RELAY_STDERR, d),
            Relay::Report(d) => (RELAY_REPORT, d),
        };
        Writer::new(tag).bytes(data).finish()
    }

    /// The next whole frame at the start of `buf`: `Ok(None)` if it has not all arrived.
    /// Returns the frame and its length.
    pub fn decode_prefix(buf: &[u8]) -> Result<Option<(Relay, usize)>, FrameError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME + 5 {
            return Err(FrameError::TooLong(len));
        }
        if buf.len() < 4 + len {
            return Ok(None);
        }
        let (tag, mut f) = open_frame(&buf[..4 + len], MAX_FRAME + 5)?;
        let data = f.bytes()?.to_vec();
        f.end()?;
        let r = match tag {
            RELAY_STDOUT => Relay::Stdout(data),
            RELAY_STDERR => Relay::Stderr(data),
            RELAY_REPORT => Relay::Report(data),
            t => return Err(FrameError::Tag(t)),
        };
        Ok(Some((r, 4 + len)))
    }
}

const TO_SESSION: u8 = 1;
const TO_STATUS: u8 = 2;
const FROM_READY: u8 = 1;
const FROM_CHILD: u8 = 2;
const FROM_EXIT: u8 = 3;
const FROM_FAILED: u8 = 4;
const REQUEST: u8 = 1;
pub(crate) const REPORT_LIMIT: u8 = 1;
pub(crate) const REPORT_RESULT: u8 = 2;
const REPORT_DONE: u8 = 3;
const REPORT_SETUP_FAILED: u8 = 4;
const REPORT_REPL: u8 = 5;
const REPORT_ERROR: u8 = 6;
const REPORT_FILE: u8 = 7;
const REPORT_FILES_TRUNCATED: u8 = 8;
const REPORT_DISPLAY: u8 = 9;
const REPORT_TRACE: u8 = 10;
const RELAY_STDOUT: u8 = 1;
const RELAY_STDERR: u8 = 2;
const RELAY_REPORT: u8 = 3;

/// Builds one frame.
struct Writer(Vec<u8>);

impl Writer {
    fn new(tag: u8) -> Writer {
        Writer(vec![0, 0, 0, 0, tag])
    }
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(self, v: &[u8]) -> Self {
        let mut w = self.u32(v.len() as u32);
        w.0.extend_from_slice(v);
        w
    }
    fn opt_bytes(self, v: Option<&[u8]>) -> Self {
        match v {
            None => self.u8(0),
            Some(b) => self.u8(1).bytes(b),
        }
    }
    fn finish(mut self) -> Vec<u8> {
        let len = (self.0.len() - 4) as u32;
        self.0[..4].copy_from_slice(&len.to_le_bytes());
        self.0
    }
}

/// Reads the fields of one frame's body (after its tag).
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Short);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i32(&mut self) -> Result<i32, FrameError> {
        Ok(i32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bool(&mut self) -> Result<bool, FrameError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(FrameError::Value("a flag that is neither 0 nor 1")),
        }
    }
    fn bytes(&mut self) -> Result<&'a [u8], FrameError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn text(&mut self) -> Result<String, FrameError> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| FrameError::Text)
    }
    fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        Ok(if self.bool()? {
            Some(self.bytes()?.to_vec())
        } else {
            None
        })
    }
    fn end(self) -> Result<(), FrameError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Trailing(self.0.len()))
        }
    }
}

/// Split one whole frame (`[len][tag][fields]`, exactly) into its tag and fields.
fn open_frame(frame: &[u8], max: usize) -> Result<(u8, Fields<'_>), FrameError> {
    let mut f = Fields(frame);
    let len = f.u32()? as usize;
    if len > max {
        return Err(FrameError::TooLong(len));
    }
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if f.0.len() != len {
        return Err(if f.0.len() < len {
            FrameError::Short
        } else {
            FrameError::Trailing(f.0.len() - len)
        });
    }
    let tag = f.u8()?;
    Ok((tag, f))
}

fn end_of(end: End) -> (u8, i32) {
    match end {
        End::Exited(c) => (0, c),
        End::Signaled(s) => (1, s),
    }
}

impl ToZygote {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ToZygote::Session { cpu_seconds } => Writer::new(TO_SESSION).u64(*cpu_seconds),
            ToZygote::Status { seq } => Writer::new(TO_STATUS).u64(*seq),
        }
        .finish()
    }

    pub fn decode(frame: &[u8]) -> Result<ToZygote, FrameError> {
        let (tag, mut f) = open_frame(frame, MAX_FRAME)?;
        let m = match tag {
            TO_SESSION => ToZygote::Session {
                cpu_seconds: f.u64()?,
            },
            TO_STATUS => ToZygote::Status { seq: f.u64()? },
            t => return Err(FrameError::Tag(t)),
        };
        f.end()?;
        Ok(m)
    }
}

impl FromZygote {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            FromZygote::Ready => Writer::new(FROM_READY),
            FromZygote::Child { seq, session } => {
                Writer::new(FROM_CHILD).u64(*seq).u8(u8::from(*session))
            }
            FromZygote::Exit {
                seq,
                end,
                cpu_micros,
                maxrss_kib,
            } => {
                let (kind, value) = end_of(*end);
                Writer::new(FROM_EXIT)
                    .u64(*seq)
                    .u8(kind)
                    .i32(value)
                    .u64(*cpu_micros)
                    .u64(*maxrss_kib)
            }
            FromZygote::Failed { policy, message } => Writer::new(FROM_FAILED)
                .u8(u8::from(*policy))
                .bytes(truncated(message).as_bytes()),
        }
        .finish()
    }

    pub fn decode(frame: &[u8]) -> Result<FromZygote, FrameError> {
        let (tag, mut f) = open_frame(frame, MAX_FRAME)?;
        let m = match tag {
            FROM_READY => FromZygote::Ready,
            FROM_CHILD => FromZygote::Child {
                seq: f.u64()?,
                session: f.bool()?,
            },
            FROM_EXIT => {
                let seq = f.u64()?;
                let end = match (f.u8()?, f.i32()?) {
                    (0, c) => End::Exited(c),
                    (1, s) => End::Signaled(s),
                    _ => return Err(FrameError::Value("an end that is neither exit nor signal")),
                };
                FromZygote::Exit {
                    seq,
                    end,
                    cpu_micros: f.u64()?,
                    maxrss_kib: f.u64()?,
                }
            }
            FROM_FAILED => FromZygote::Failed {
                policy: f.bool()?,
                message: f.text()?,
            },
            t => return Err(FrameError::Tag(t)),
        };
        f.end()?;
        Ok(m)
    }
}

/// A message cut to fit in a frame (at a character boundary).
fn truncated(message: &str) -> &str {
    truncated_to(message, MAX_FRAME / 2)
}

/// Bounds of an `Error` frame's fields, in bytes (the bootstrap cuts them the same way), which
/// keep the frame within [`MAX_FRAME`].
pub const ERROR_TYPE_MAX: usize = 256;
pub const ERROR_MESSAGE_MAX: usize = 8 * 1024;
pub const ERROR_TRACEBACK_MAX: usize = 48 * 1024;

fn truncated_to(message: &str, max: usize) -> &str {
    if message.len() <= max {
        return message;
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(REQUEST)
            .bytes(&self.code)
            .bytes(self.name.as_bytes())
            .opt_bytes(self.stdin.as_deref())
            .opt_bytes(self.api.as_deref())
            .u32(self.files.len() as u32);
        for (name, data) in &self.files {
            w = w.bytes(name.as_bytes()).bytes(data);
        }
        w = w.u32(self.collect.len() as u32);
        for glob in &self.collect {
            w = w.bytes(glob.as_bytes());
        }
        let flags = u8::from(self.cell) | u8::from(self.live) << 1;
        w = w.u8(flags).u32(self.args.len() as u32);
        for a in &self.args {
            w = w.bytes(a.as_bytes());
        }
        w.finish()
    }

    /// Decode a whole request frame of at most `max` bytes (the bootstrap's decoder is the one
    /// in use; this one documents the layout and tests it).
    pub fn decode(frame: &[u8], max: usize) -> Result<Request, FrameError> {
        let (tag, mut f) = open_frame(frame, max)?;
        if tag != REQUEST {
            return Err(FrameError::Tag(tag));
        }
        let code = f.bytes()?.to_vec();
        let name = f.text()?;
        let stdin = f.opt_bytes()?;
        let api = f.opt_bytes()?;
        let mut files = Vec::new();
        for _ in 0..f.u32()? {
            files.push((f.text()?, f.bytes()?.to_vec()));
        }
        let mut collect = Vec::new();
        for _ in 0..f.u32()? {
            collect.push(f.text()?);
        }
        let flags = f.u8()?;
        if flags & !3 != 0 {
            return Err(FrameError::Value("request flags beyond cell and live"));
        }
        let (cell, live) = (flags & 1 != 0, flags & 2 != 0);
        let mut args = Vec::new();
        for _ in 0..f.u32()? {
            args.push(f.text()?);
        }
        let r = Request {
            code,
            name,
            stdin,
            api,
            files,
            collect,
            cell,
            live,
            args,
        };
        f.end()?;
        Ok(r)
    }
}

impl Report {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Report::Limit(l) => Writer::new(REPORT_LIMIT).bytes(l.name().as_bytes()),
            Report::Result(data) => Writer::new(REPORT_RESULT).bytes(data),
            Report::Done {
                exit,
                cpu_micros,
                maxrss_kib,
            } => Writer::new(REPORT_DONE)
                .i32(*exit)
                .u64(*cpu_micros)
                .u64(*maxrss_kib),
            Report::SetupFailed { step, message } => Writer::new(REPORT_SETUP_FAILED)
                .bytes(step.as_bytes())
                .bytes(truncated(message).as_bytes()),
            Report::File { name, data } => {
                Writer::new(REPORT_FILE).bytes(name.as_bytes()).bytes(data)
            }
            Report::FilesTruncated => Writer::new(REPORT_FILES_TRUNCATED),
            Report::Display(json) => Writer::new(REPORT_DISPLAY).bytes(json),
            Report::Error {
                kind,
                message,
                traceback,
            } => Writer::new(REPORT_ERROR)
                .bytes(truncated_to(kind, ERROR_TYPE_MAX).as_bytes())
                .bytes(truncated_to(message, ERROR_MESSAGE_MAX).as_bytes())
                .bytes(truncated_to(traceback, ERROR_TRACEBACK_MAX).as_bytes()),
            Report::Trace(marks) => marks.iter().take(TRACE_MAX).fold(
                Writer::new(REPORT_TRACE).u32(marks.len().min(TRACE_MAX) as u32),
                |w, m| w.bytes(m.phase.as_bytes()).u64(m.nanos).u64(m.faults),
            ),
            Report::Repl(state) => Writer::new(REPORT_REPL).u8(match state {
                ReplState::Ready => 0,
                ReplState::More => 1,
                ReplState::Done => 2,
                ReplState::Exit => 3,
            }),
        }
        .finish()
    }

    fn decode_body(tag: u8, mut f: Fields<'_>) -> Result<Report, FrameError> {
        let r = match tag {
            REPORT_LIMIT => {
                let name = f.text()?;
                Report::Limit(Limit::from_name(&name).ok_or(FrameError::Value("an unknown limit"))?)
            }
            REPORT_RESULT => Report::Result(f.bytes()?.to_vec()),
            REPORT_DONE => Report::Done {
                exit: f.i32()?,
                cpu_micros: f.u64()?,
                maxrss_kib: f.u64()?,
            },
            REPORT_SETUP_FAILED => Report::SetupFailed {
                step: f.text()?,
                message: f.text()?,
            },
            REPORT_FILE => Report::File {
                name: f.text()?,
                data: f.bytes()?.to_vec(),
            },
            REPORT_FILES_TRUNCATED => Report::FilesTruncated,
            REPORT_DISPLAY => Report::Display(f.bytes()?.to_vec()),
            REPORT_ERROR => Report::Error {
                kind: f.text()?,
                message: f.text()?,
                traceback: f.text()?,
            },
            REPORT_TRACE => {
                let n = f.u32()? as usize;
                if n > TRACE_MAX {
                    return Err(FrameError::Value("too many trace marks"));
                }
                let mut marks = Vec::with_capacity(n);
                for _ in 0..n {
                    marks.push(Mark {
                        phase: f.text()?,
                        nanos: f.u64()?,
                        faults: f.u64()?,
                    });
                }
                Report::Trace(marks)
            }
            REPORT_REPL => Report::Repl(match f.u8()? {
                0 => ReplState::Ready,
                1 => ReplState::More,
                2 => ReplState::Done,
                3 => ReplState::Exit,
                _ => return Err(FrameError::Value("an unknown repl state")),
            }),
            t => return Err(FrameError::Tag(t)),
        };
        f.end()?;
        Ok(r)
    }
}

/// Incremental decoder of a report pipe: bytes go in as they are read, frames come out. A
/// `Result` frame may be up to `result_max` bytes long; a longer one is skipped, not kept, and
/// flagged ([`ReportReader::result_truncated`]). After a frame that does not decode, nothing
/// more is decoded ([`ReportReader::error`]).
pub struct ReportReader {
    buf: Vec<u8>,
    /// `None`: no `Result` frame is expected (one is an error).
    result_max: Option<usize>,
    /// Bytes of an oversized `Result` frame still to be skipped.
    skipping: usize,
    pub result_truncated: bool,
    /// A file or rich output longer than the bound was skipped.
    pub other_truncated: bool,
    pub error: Option<FrameError>,
}

impl ReportReader {
    pub fn new(result_max: usize) -> ReportReader {
        ReportReader {
            buf: Vec::new(),
            result_max: Some(result_max),
            skipping: 0,
            result_truncated: false,
            other_truncated: false,
            error: None,
        }
    }

    /// A reader of a report that carries no `Result` (the repl's): one is an error.
    pub fn without_results() -> ReportReader {
        ReportReader {
            result_max: None,
            ..ReportReader::new(0)
        }
    }

    /// Take `data`; push every frame it completes onto `out`.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<Report>) {
        if self.error.is_some() {
            return;
        }
        if self.skipping > 0 {
            let n = self.skipping.min(data.len());
            self.skipping -= n;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
        let mut at = 0;
        while self.error.is_none() && self.skipping == 0 {
            let rest = &self.buf[at..];
            if rest.len() < 5 {
                break;
            }
            let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            let tag = rest[4];
            // Results, files and rich outputs have the caller's bound (and room for the fields'
            // lengths: a file's name is at most 4 KiB); a report that expects none refuses them.
            let big = matches!(tag, REPORT_RESULT | REPORT_FILE | REPORT_DISPLAY);
            let max = match (big, self.result_max) {
                (true, None) => {
                    self.error = Some(FrameError::Tag(tag));
                    break;
                }
                // A result's bound is its data's; a file's has room for its name too.
                (true, Some(m)) if tag == REPORT_RESULT => m.saturating_add(5),
                (true, Some(m)) => m.saturating_add(4096 + 9),
                (false, _) => MAX_FRAME,
            };
            if len > max {
                if big {
                    if tag == REPORT_RESULT {
                        self.result_truncated = true;
                    } else {
                        self.other_truncated = true;
                    }
                    let have = rest.len() - 4;
                    if have >= len {
                        at += 4 + len;
                    } else {
                        self.skipping = len - have;
                        at = self.buf.len();
                    }
                    continue;
                }
                self.error = Some(FrameError::TooLong(len));
                break;
            }
            if len == 0 {
                self.error = Some(FrameError::Empty);
                break;
            }
            if rest.len() < 4 + len {
                break;
            }
            let frame = &rest[..4 + len];
            match open_frame(frame, max).and_then(|(t, f)| Report::decode_body(t, f)) {
                Ok(r) => out.push(r),
                Err(e) => self.error = Some(e),
            }
            at += 4 + len;
        }
        self.buf.drain(..at.min(self.buf.len()));
        if self.error.is_some() {
            self.buf = Vec::new();
        }
    }

    /// Bytes of an unfinished frame at the end of the stream.
    pub fn pending(&self) -> usize {
        self.buf.len() + self.skipping
    }
}

/// Decode a whole report (a cold run's, read to its end).
pub fn decode_reports(data: &[u8], result_max: usize) -> (Vec<Report>, ReportReader) {
    let mut r = ReportReader::new(result_max);
    let mut out = Vec::new();
    r.feed(data, &mut out);
    (out, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_round_trips() {
        for m in [
            ToZygote::Session { cpu_seconds: 7 },
            ToZygote::Status { seq: u64::MAX },
        ] {
            assert_eq!(ToZygote::decode(&m.encode()).unwrap(), m);
        }
        for m in [
            FromZygote::Ready,
            FromZygote::Child {
                seq: 3,
                session: true,
            },
            FromZygote::Exit {
                seq: 9,
                end: End::Signaled(9),
                cpu_micros: 12,
                maxrss_kib: 4096,
            },
            FromZygote::Failed {
                policy: true,
                message: "bad – policy".into(),
            },
        ] {
            assert_eq!(FromZygote::decode(&m.encode()).unwrap(), m);
        }
        let r = Request {
            code: b"print(1)".to_vec(),
            name: "a.py".into(),
            stdin: Some(vec![0, 1, 2]),
            api: None,
            files: vec![("in/a.csv".into(), b"1,2".to_vec())],
            collect: vec!["*.png".into()],
            cell: true,
            live: true,
            args: vec!["--n".into(), "3".into()],
        };
        assert_eq!(Request::decode(&r.encode(), MAX_FRAME).unwrap(), r);
        // A flag beyond cell and live is refused.
        let mut bad = Request::default().encode();
        let at = bad.len() - 5;
        assert_eq!(bad[at], 0);
        bad[at] = 4;
        assert!(Request::decode(&bad, MAX_FRAME).is_err());
        let reports = vec![
            Report::Limit(Limit::Memory),
            Report::Result(b"{\"d\": []}".to_vec()),
            Report::Done {
                exit: -1,
                cpu_micros: 5,
                maxrss_kib: 6,
            },
            Report::SetupFailed {
                step: "landlock".into(),
                message: "injected".into(),
            },
            Report::Repl(ReplState::More),
            Report::Error {
                kind: "ZeroDivisionError".into(),
                message: "division by zero".into(),
                traceback: "Traceback (most recent call last):\n".into(),
            },
            Report::Trace(vec![Mark {
                phase: "fork".into(),
                nanos: 41_000,
                faults: 30,
            }]),
        ];
        let bytes: Vec<u8> = reports.iter().flat_map(|r| r.encode()).collect();
        let (got, reader) = decode_reports(&bytes, 1024);
        assert_eq!(got, reports);
        assert!(reader.error.is_none() && reader.pending() == 0);
    }

    /// A trace claims no more marks than a frame may carry.
    #[test]
    fn trace_frames_are_bounded() {
        let mark = Mark {
            phase: "x".into(),
            nanos: 1,
            faults: 1,
        };
        let many = Report::Trace(vec![mark; TRACE_MAX + 5]);
        match Report::decode_body(REPORT_TRACE, Fields(&many.encode()[5..])).unwrap() {
            Report::Trace(m) => assert_eq!(m.len(), TRACE_MAX),
            other => panic!("{other:?}"),
        }
        let mut forged = Writer::new(REPORT_TRACE).u32(u32::MAX).finish();
        forged.extend([0u8; 20]);
        assert!(Report::decode_body(REPORT_TRACE, Fields(&forged[5..])).is_err());
    }

    /// The bytes the bootstrap's frames are checked against (tests/python/test_bootstrap.py).
    #[test]
    fn layouts_shared_with_the_bootstrap() {
        let done = Report::Done {
            exit: 7,
            cpu_micros: 0,
            maxrss_kib: 0,
        };
        let mut want = b"\x15\x00\x00\x00\x03\x07\x00\x00\x00".to_vec();
        want.extend([0u8; 16]);
        assert_eq!(done.encode(), want);
        assert_eq!(
            Report::Limit(Limit::Memory).encode(),
            b"\x0b\x00\x00\x00\x01\x06\x00\x00\x00memory"
        );
        let r = Request {
            code: b"print(1)".to_vec(),
            name: "a.py".into(),
            stdin: Some(b"in".to_vec()),
            api: None,
            ..Default::default()
        };
        let mut want = b"\x2a\x00\x00\x00\x01\x08\x00\x00\x00print(1)\x04\x00\x00\x00a.py".to_vec();
        want.extend(b"\x01\x02\x00\x00\x00in\x00");
        // No files, nothing to collect, not a cell, no arguments.
        want.extend([0u8; 13]);
        assert_eq!(r.encode(), want);
    }

    #[test]
    fn relay_frames_round_trip_and_wait_for_their_end() {
        let mut bytes = Relay::Stdout(b"out".to_vec()).encode();
        bytes.extend(Relay::Report(Report::Repl(ReplState::Done).encode()).encode());
        let (a, n) = Relay::decode_prefix(&bytes).unwrap().unwrap();
        assert_eq!(a, Relay::Stdout(b"out".to_vec()));
        assert!(Relay::decode_prefix(&bytes[n..bytes.len() - 1])
            .unwrap()
            .is_none());
        let (b, m) = Relay::decode_prefix(&bytes[n..]).unwrap().unwrap();
        assert_eq!(n + m, bytes.len());
        let Relay::Report(r) = b else { panic!() };
        assert_eq!(decode_reports(&r, 0).0, vec![Report::Repl(ReplState::Done)]);
    }

    #[test]
    fn reports_arrive_in_pieces() {
        let reports = [
            Report::Limit(Limit::Processes),
            Report::Result(vec![b'x'; 3000]),
            Report::Done {
                exit: 0,
                cpu_micros: 1,
                maxrss_kib: 2,
            },
        ];
        let bytes: Vec<u8> = reports.iter().flat_map(|r| r.encode()).collect();
        for step in [1, 2, 3, 7, 64, 1000] {
            let mut r = ReportReader::new(4096);
            let mut out = Vec::new();
            for chunk in bytes.chunks(step) {
                r.feed(chunk, &mut out);
            }
            assert_eq!(out, reports, "pieces of {step}");
        }
    }

    #[test]
    fn an_oversized_result_is_skipped_and_flagged() {
        let big = Report::Result(vec![b'y'; 10_000]).encode();
        let done = Report::Done {
            exit: 3,
            cpu_micros: 0,
            maxrss_kib: 0,
        };
        let mut bytes = big.clone();
        bytes.extend(done.encode());
        for step in [1, 100, 20_000] {
            let mut r = ReportReader::new(1000);
            let mut out = Vec::new();
            for chunk in bytes.chunks(step) {
                r.feed(chunk, &mut out);
            }
            assert!(r.result_truncated, "pieces of {step}");
            assert_eq!(out, vec![done.clone()], "pieces of {step}");
        }
    }

    #[test]
    fn malformed_frames_end_the_stream() {
        let done = Report::Done {
            exit: 0,
            cpu_micros: 0,
            maxrss_kib: 0,
        }
        .encode();
        // Garbage written by the code before the real frame: nothing after it is believed.
        for junk in [
            &b"limit memory\n"[..],
            &[1, 0, 0, 0, 99][..],
            &[0, 0, 0, 0][..],
            &[255, 255, 255, 127, REPORT_LIMIT][..],
            &[6, 0, 0, 0, REPORT_LIMIT, 1, 0, 0, 0, b'x'][..],
        ] {
            let mut bytes = junk.to_vec();
            bytes.extend(&done);
            let (got, r) = decode_reports(&bytes, 100);
            assert!(r.error.is_some(), "{junk:?} gave {got:?}");
            assert!(!got.iter().any(|x| matches!(x, Report::Done { .. })));
        }
        // Trailing bytes inside a frame and truncated fields are errors too.
        let mut f = Report::Limit(Limit::Wall).encode();
        f[0] += 1;
        f.push(0);
        assert_eq!(
            decode_reports(&f, 10).1.error,
            Some(FrameError::Trailing(1))
        );
        assert!(FromZygote::decode(&[1, 0, 0, 0]).is_err());
        assert!(ToZygote::decode(&[9, 0, 0, 0, TO_STATUS, 1, 2, 3, 4, 5, 6, 7, 8]).is_ok());
        assert_eq!(
            ToZygote::decode(&[10, 0, 0, 0, TO_STATUS, 1, 2, 3, 4, 5, 6, 7, 8, 9]),
            Err(FrameError::Trailing(1))
        );
    }
}
