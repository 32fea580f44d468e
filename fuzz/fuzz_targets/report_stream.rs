//! The report pipe (`protocol::ReportReader`, child → host): written by the bootstrap, and by
//! the untrusted code too if it wants (descriptor 4). The bytes go in pieces, as `read` returns
//! them; then the reports become an outcome's files and rich results (`outcome::Extras`), as
//! the warm path does, and the outcome is serialized as a client would get it.
//!
//! Properties: no panic; the frames decoded do not depend on how the bytes were split; every
//! collected file's name passes `check_file_name` (no absolute path, no `..`); a report that
//! decodes re-encodes to a frame that decodes to itself (when its fields are within the
//! encoder's bounds).
#![no_main]
use libfuzzer_sys::fuzz_target;
use pysandbox_core::outcome::{check_file_name, ErrorKind, Extras, Outcome};
use pysandbox_core::protocol::{
    decode_reports, Report, ReportReader, ERROR_MESSAGE_MAX, ERROR_TRACEBACK_MAX, ERROR_TYPE_MAX,
    MAX_FRAME,
};

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    // A small result bound too, so that the skipping of oversized results is reached.
    let result_max = if split & 0x80 != 0 { 64 } else { 1 << 20 };
    let (whole, whole_reader) = decode_reports(data, result_max);
    let step = usize::from(split & 0x7f) + 1;
    let mut reader = ReportReader::new(result_max);
    let mut pieces = Vec::new();
    for chunk in data.chunks(step) {
        reader.feed(chunk, &mut pieces);
    }
    assert_eq!(whole, pieces, "pieces of {step}");
    assert_eq!(whole_reader.error, reader.error, "pieces of {step}");
    assert_eq!(whole_reader.result_truncated, reader.result_truncated);
    assert_eq!(whole_reader.other_truncated, reader.other_truncated);
    if whole_reader.error.is_none() {
        assert_eq!(whole_reader.pending(), reader.pending());
    }
    // A repl's reader refuses results and files; it must not panic either.
    let mut repl = ReportReader::without_results();
    let mut out = Vec::new();
    for chunk in data.chunks(step) {
        repl.feed(chunk, &mut out);
    }

    let mut extras = Extras::default();
    for r in &whole {
        extras.take(r);
        let lossless = match r {
            Report::Error {
                kind,
                message,
                traceback,
            } => {
                kind.len() <= ERROR_TYPE_MAX
                    && message.len() <= ERROR_MESSAGE_MAX
                    && traceback.len() <= ERROR_TRACEBACK_MAX
            }
            Report::SetupFailed { message, .. } => message.len() <= MAX_FRAME / 2,
            _ => true,
        };
        if lossless {
            let (again, rd) = decode_reports(&r.encode(), result_max);
            assert!(rd.error.is_none(), "{r:?}: {:?}", rd.error);
            assert_eq!(again, vec![r.clone()]);
        }
    }
    for name in extras.files.keys() {
        assert!(check_file_name(name).is_ok(), "collected {name:?}");
        assert!(!name.starts_with('/') && !name.split('/').any(|c| c == ".."));
    }
    let mut o = Outcome::sandbox_error(ErrorKind::Malformed, String::new());
    extras.fill(&mut o);
    let json = serde_json::to_string(&o).expect("an outcome serializes");
    let back: Outcome = serde_json::from_str(&json).expect("an outcome parses back");
    assert_eq!(back.files, o.files);
    assert_eq!(back.results, o.results);
});
