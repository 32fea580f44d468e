//! What the soak reads of the host before and after: processes (descendants, zombies, strays),
//! descriptors, mounts, SysV IPC objects, temp directories, cgroups, resident memory.

use std::collections::BTreeSet;
use std::path::Path;

/// `/proc/PID/stat`'s state and parent, and `/proc/PID/comm`.
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub state: char,
    pub comm: String,
    pub cmdline: String,
}

pub fn processes() -> Vec<Proc> {
    let mut all = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return all;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let open = stat.find('(').unwrap_or(0);
        let rest: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        all.push(Proc {
            pid,
            ppid: rest.get(1).and_then(|p| p.parse().ok()).unwrap_or(0),
            state: rest.first().and_then(|s| s.chars().next()).unwrap_or('?'),
            comm: stat[open + 1..close].to_string(),
            cmdline: String::from_utf8_lossy(&cmdline).replace('\0', " "),
        });
    }
    all
}

/// The processes below `root` (not `root` itself).
pub fn descendants(all: &[Proc], root: u32) -> Vec<&Proc> {
    let mut found: Vec<&Proc> = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for c in all.iter().filter(|c| c.ppid == p) {
            found.push(c);
            frontier.push(c.pid);
        }
    }
    found
}

pub fn describe(p: &Proc) -> String {
    format!("{} {} ({}) {}", p.pid, p.comm, p.state, p.cmdline)
}

/// Processes that named themselves `prefix…` (the soak's stray marker).
pub fn named(prefix: &str) -> Vec<String> {
    processes()
        .iter()
        .filter(|p| p.comm.starts_with(prefix))
        .map(describe)
        .collect()
}

pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `/proc/self/mountinfo` without the mount ids' order mattering.
pub fn mounts() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The host's SysV IPC objects: `/proc/sysvipc/{shm,sem,msg}` lines (key and id).
pub fn sysv() -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for kind in ["shm", "sem", "msg"] {
        let text = std::fs::read_to_string(format!("/proc/sysvipc/{kind}")).unwrap_or_default();
        for l in text.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 1 {
                all.insert(format!("{kind} key {} id {}", f[0], f[1]));
            }
        }
    }
    all
}

/// Entries of the temp directories the host shares.
pub fn temp_entries() -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for dir in ["/tmp", "/dev/shm", "/var/tmp"] {
        if let Ok(d) = std::fs::read_dir(dir) {
            for e in d.flatten() {
                all.insert(format!("{dir}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    all
}

/// Cgroup directories named after pysandbox (three levels deep: none is used today).
pub fn cgroups() -> BTreeSet<String> {
    fn walk(dir: &Path, depth: u32, out: &mut BTreeSet<String>) {
        let Ok(d) = std::fs::read_dir(dir) else {
            return;
        };
        for e in d.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if e.file_name().to_string_lossy().contains("pysandbox") {
                out.insert(p.to_string_lossy().into_owned());
            }
            if depth > 0 {
                walk(&p, depth - 1, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(Path::new("/sys/fs/cgroup"), 3, &mut out);
    out
}

/// What the host looked like at one moment.
pub struct Snapshot {
    pub fds: usize,
    pub mounts: BTreeSet<String>,
    pub sysv: BTreeSet<String>,
    pub temp: BTreeSet<String>,
    pub cgroups: BTreeSet<String>,
    /// Processes running the binary under test.
    pub ours: Vec<String>,
}

impl Snapshot {
    pub fn now(binary: &str) -> Snapshot {
        Snapshot {
            fds: fd_count(std::process::id()),
            mounts: mounts(),
            sysv: sysv(),
            temp: temp_entries(),
            cgroups: cgroups(),
            ours: processes()
                .iter()
                .filter(|p| p.cmdline.starts_with(binary))
                .map(describe)
                .collect(),
        }
    }
}

/// What is in `after` and not in `before`.
pub fn new_in(before: &BTreeSet<String>, after: &BTreeSet<String>) -> Vec<String> {
    after.difference(before).cloned().collect()
}
