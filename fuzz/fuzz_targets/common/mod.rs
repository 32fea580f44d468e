//! What the HTTP targets share: the operator's policies a body is narrowed from, and the
//! checks that a narrowed policy never gives more than its ceiling.
#![allow(dead_code)]

use pysandbox_core::policy::{Feature, Policy};
use pysandbox_core::warm::Request;

/// Ceilings an operator might run the server with: the default policy, the `stdlib` preset
/// with threads, the `full` preset with every limit given.
pub fn ceiling(pick: u8) -> Policy {
    let toml = match pick % 3 {
        0 => "",
        1 => "preset = \"stdlib\"\nfeatures = [\"threads\"]\n",
        _ => {
            "preset = \"full\"\n[limits]\nwall = \"10s\"\ncpu = \"5s\"\nmemory = \"1G\"\n\
             processes = 4\nopen_files = 64\nfile_size = \"8M\"\ntmp_size = \"32M\"\n\
             output = \"1M\"\n"
        }
    };
    let p = Policy::from_toml_str(toml).expect("a ceiling parses");
    p.validate().expect("a ceiling validates");
    p
}

/// A policy narrowed from `ceiling` gives nothing the ceiling does not: no higher limit, no
/// capability (network, subprocess, threads) it lacks, no network it does not have.
pub fn assert_within(policy: &Policy, ceiling: &Policy) {
    policy.validate().expect("a narrowed policy validates");
    let (got, max) = (policy.effective_limits(), ceiling.effective_limits());
    assert!(got.wall <= max.wall, "wall {:?} > {:?}", got.wall, max.wall);
    if let Some(m) = max.cpu {
        assert!(got.cpu.is_some_and(|c| c <= m), "cpu {:?} > {m:?}", got.cpu);
    }
    if let Some(m) = max.memory {
        assert!(
            got.memory.is_some_and(|c| c <= m),
            "memory {:?} > {m}",
            got.memory
        );
    }
    assert!(got.processes <= max.processes, "processes");
    assert!(got.open_files <= max.open_files, "open_files");
    assert!(got.file_size <= max.file_size, "file_size");
    assert!(got.tmp_size <= max.tmp_size, "tmp_size");
    assert!(got.output <= max.output, "output");
    let (have, granted) = (policy.effective_features(), ceiling.effective_features());
    for f in [Feature::Network, Feature::Subprocess, Feature::Threads] {
        assert!(
            !have.contains(&f) || granted.contains(&f),
            "{f} not granted"
        );
    }
    assert_eq!(policy.effective_network(), ceiling.effective_network());
    assert_eq!(policy.allow_read, ceiling.allow_read);
    assert_eq!(policy.allow_write, ceiling.allow_write);
    assert_eq!(policy.python, ceiling.python);
}

/// A request's own wall limit is below the ceiling's; a request the pool would accept
/// (`Request::check`) encodes to a frame the child's decoder takes back unchanged.
pub fn assert_request(req: &Request, ceiling: &Policy) {
    if let Some(w) = req.wall {
        assert!(w <= ceiling.effective_limits().wall, "request wall {w:?}");
    }
    let tmp = ceiling.effective_limits().tmp_size;
    if req.check(tmp).is_err() {
        return;
    }
    for (name, _) in &req.files {
        assert!(
            !name.starts_with('/') && !name.split('/').any(|c| c == ".."),
            "{name:?}"
        );
    }
    let frame = pysandbox_core::protocol::Request {
        code: req.code.as_bytes().to_vec(),
        name: req.name.clone().unwrap_or_default(),
        stdin: req.stdin.as_ref().map(|s| s.as_bytes().to_vec()),
        api: req.api.as_ref().map(|a| a.to_string().into_bytes()),
        files: req.files.clone(),
        collect: req.collect.clone(),
        cell: req.cell,
        live: false,
        args: req.args.clone(),
    };
    let bytes = frame.encode();
    let back = pysandbox_core::protocol::Request::decode(&bytes, usize::MAX)
        .expect("a request's frame decodes");
    assert_eq!(back, frame);
}
