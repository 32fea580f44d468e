//! `pysandbox-bench N server`: a bounded load generator for `pysandbox server` on loopback.
//! `print(1+1)` through `POST /v1/execute` on keep-alive connections at concurrency 1, 8 and
//! 64 (requests/s, p50, p99), next to `pysandbox batch` with as many workers, in the same run
//! (batch before and after the server rows); then 10× the queue bound at once (what answers
//! come back); then the server's memory over 20,000 requests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BODY: &str = r#"{"code": "print(1+1)"}"#;

/// One keep-alive HTTP/1.1 connection.
pub(crate) struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    pub(crate) fn open(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).expect("connecting to the server");
        s.set_nodelay(true).expect("TCP_NODELAY");
        Conn {
            writer: s.try_clone().expect("clone"),
            reader: BufReader::new(s),
        }
    }

    /// POST the body; the status and the response body.
    fn post(&mut self, path: &str, body: &str) -> (u16, Vec<u8>) {
        self.request("POST", path, body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// One request on the connection: the status and the response body.
    pub(crate) fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.writer.write_all(req.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad(format!("not a status line: {line:?}")))?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("content-length {v:?}")))?;
                }
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, body))
    }
}

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

impl Server {
    pub(crate) fn start(binary: &std::path::Path, python: &str, flags: &[&str]) -> Server {
        let mut child = Command::new(binary)
            .args(["server", "--listen", "127.0.0.1:0", "--python", python])
            .args(flags)
            .env("PYSANDBOX_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting pysandbox server");
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("its first line");
        let addr = first
            .trim()
            .strip_prefix("pysandbox server listening on http://")
            .unwrap_or_else(|| panic!("the server did not start: {first:?}"))
            .to_string();
        Server { child, addr }
    }

    pub(crate) fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// What `total` requests at `concurrency` gave: every latency, the wall time, the statuses.
struct Load {
    latencies: Vec<Duration>,
    wall: Duration,
    ok: usize,
    busy: usize,
    other: Vec<String>,
}

fn load(addr: &str, concurrency: usize, total: usize) -> Load {
    paced(addr, concurrency, total, Duration::ZERO)
}

/// [`load`], each connection pausing `pause` between an answer and its next request.
fn paced(addr: &str, concurrency: usize, total: usize, pause: Duration) -> Load {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..concurrency)
        .map(|_| {
            let (addr, next) = (addr.to_string(), Arc::clone(&next));
            std::thread::spawn(move || {
                let mut conn = Conn::open(&addr);
                let (mut lat, mut ok, mut busy, mut other) = (Vec::new(), 0, 0, Vec::new());
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    if !pause.is_zero() {
                        std::thread::sleep(pause);
                    }
                    let t = Instant::now();
                    let (status, body) = conn.post("/v1/execute", BODY);
                    lat.push(t.elapsed());
                    let text = String::from_utf8_lossy(&body);
                    match status {
                        200 if text.contains(r#""stdout":"2\n""#) => ok += 1,
                        429 => busy += 1,
                        _ => other.push(format!("{status} {text}")),
                    }
                }
                (lat, ok, busy, other)
            })
        })
        .collect();
    let mut l = Load {
        latencies: Vec::new(),
        wall: Duration::ZERO,
        ok: 0,
        busy: 0,
        other: Vec::new(),
    };
    for t in threads {
        let (lat, ok, busy, other) = t.join().expect("a load thread");
        l.latencies.extend(lat);
        l.ok += ok;
        l.busy += busy;
        l.other.extend(other);
    }
    l.wall = start.elapsed();
    l.latencies.sort();
    l
}

/// `pysandbox batch --workers W` over `n` lines of `print(1+1)`: runs/s.
fn batch(python: &str, workers: usize, n: usize) -> f64 {
    crate::batch_throughput(python, n, &["--workers", &workers.to_string()])
}

pub fn run(total: usize, python: &str) {
    let binary = crate::pysandbox_binary();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let w = workers.to_string();
    let total = total.max(200);
    println!(
        "\n# pysandbox server: print(1+1) through POST /v1/execute, keep-alive connections, \
         {workers} workers, {total} requests per row"
    );
    let batch_before = batch(python, workers, total);
    let server = Server::start(&binary, python, &["--workers", &w]);
    // Warm: every worker has answered.
    load(&server.addr, workers, 200);
    let rss_start = server.rss_kib();
    println!(
        "{:<34} {:>10} {:>9} {:>9} {:>9}",
        "", "req/s", "p50 ms", "p99 ms", "vs batch"
    );
    let mut rows = Vec::new();
    for c in [1, 8, 64] {
        let l = load(&server.addr, c, total);
        assert!(
            l.other.is_empty() && l.busy == 0,
            "concurrency {c}: {} busy, other answers: {:?}",
            l.busy,
            &l.other[..l.other.len().min(3)]
        );
        rows.push((c, l));
    }
    // One caller at a time, 5 ms apart: the latency of a request that finds a worker ready.
    let spaced = paced(&server.addr, 1, total / 2, Duration::from_millis(5));
    let batch_after = batch(python, workers, total);
    let batch_rate = (batch_before + batch_after) / 2.0;
    for (c, l) in &rows {
        let rate = l.latencies.len() as f64 / l.wall.as_secs_f64();
        println!(
            "{:<34} {:>10.0} {:>9.3} {:>9.3} {:>8.2}x",
            format!("server, concurrency {c}"),
            rate,
            crate::ms(crate::percentile(&l.latencies, 0.5)),
            crate::ms(crate::percentile(&l.latencies, 0.99)),
            rate / batch_rate
        );
    }
    println!(
        "{:<34} {:>10} {:>9.3} {:>9.3}",
        "server, 1 caller, 5 ms apart",
        "",
        crate::ms(crate::percentile(&spaced.latencies, 0.5)),
        crate::ms(crate::percentile(&spaced.latencies, 0.99)),
    );
    println!(
        "{:<34} {:>10.0} {:>9} {:>9}   (before {batch_before:.0}, after {batch_after:.0})",
        format!("pysandbox batch --workers {workers}"),
        batch_rate,
        "",
        ""
    );
    drop(server);

    // Overload: 10x the queue bound at once.
    let queue = 8;
    let server = Server::start(
        &binary,
        python,
        &["--workers", &w, "--max-queue", &queue.to_string()],
    );
    load(&server.addr, workers, 100);
    let l = load(&server.addr, 10 * queue, 20 * queue * 10);
    println!(
        "overload: {} connections against --max-queue {queue}: {} answered, {} refused with 429, \
         {} other answers{}",
        10 * queue,
        l.ok,
        l.busy,
        l.other.len(),
        l.other
            .first()
            .map(|o| format!(" (first: {o})"))
            .unwrap_or_default()
    );
    drop(server);

    // Memory over 20,000 requests at concurrency 8.
    let server = Server::start(&binary, python, &["--workers", &w]);
    load(&server.addr, workers, 200);
    let before = server.rss_kib();
    let mut marks = Vec::new();
    for _ in 0..4 {
        let l = load(&server.addr, 8, 5_000);
        assert!(
            l.other.is_empty() && l.busy == 0,
            "{:?}",
            &l.other[..l.other.len().min(3)]
        );
        marks.push(server.rss_kib());
    }
    println!(
        "server RSS over 20,000 requests: {before} KiB after warm-up, then {} KiB after each 5,000 \
         (the load rows above started at {rss_start} KiB)",
        marks
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
}
