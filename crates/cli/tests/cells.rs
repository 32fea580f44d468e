//! Cell mode (issue 12): notebook semantics on every path and caller: the last expression's
//! value is the main result, `display()` adds results, each a MIME bundle from the object's
//! `_repr_*_` methods; tracebacks keep the cell's own line numbers; a session keeps state
//! across cells.

mod common;

use common::*;
use serde_json::{json, Value};

/// The outcomes (JSON) of `cells` run in cell mode on `c`'s path: one cold run per cell, or
/// one batch (a session's lines share its state).
fn run_cells(c: Combo, cells: &[&str]) -> Vec<Value> {
    match c.path {
        ExecPath::Cold => cells
            .iter()
            .map(|code| {
                let out = c
                    .caller
                    .command(
                        &["run", "--json", "--cell"],
                        &["-c", code],
                        &RunOpts::default(),
                    )
                    .output()
                    .unwrap();
                serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                    panic!(
                        "{c}: no outcome ({e}): {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                })
            })
            .collect(),
        ExecPath::Warm | ExecPath::Session => {
            let lines: Vec<Value> = cells
                .iter()
                .enumerate()
                .map(|(i, code)| {
                    let mut l = json!({"id": i, "code": code, "mode": "cell"});
                    if c.path == ExecPath::Session {
                        l["session"] = json!("s");
                    }
                    l
                })
                .collect();
            let b = c
                .caller
                .batch(&["--workers", "1"], &lines, &RunOpts::default());
            (0..cells.len() as i64)
                .map(|i| {
                    b.answer(i)
                        .unwrap_or_else(|| panic!("{c}: no answer {i}"))
                        .clone()
                })
                .collect()
        }
    }
}

#[test]
fn a_cell_gives_its_last_value_and_its_displays() {
    for_each_combo(|c| {
        let code = "class Rich:\n    def _repr_html_(self):\n        return '<b>rich</b>'\n    def _repr_png_(self):\n        return b'\\x89PNG'\n\
                    display(Rich(), {'k': 1})\nx = 6\nx * 7";
        let o = &run_cells(c, &[code])[0];
        assert_eq!(o["status"], "ok", "{c}: {o}");
        let r = o["results"].as_array().unwrap();
        assert_eq!(r.len(), 3, "{c}: {o}");
        assert_eq!(r[0]["data"]["text/html"], "<b>rich</b>", "{c}: {o}");
        assert_eq!(r[0]["data"]["image/png"], "iVBORw==", "{c}: {o}");
        assert_eq!(r[0]["is_main_result"], false, "{c}: {o}");
        assert_eq!(r[1]["data"]["text/plain"], "{'k': 1}", "{c}: {o}");
        assert_eq!(r[2]["data"], json!({"text/plain": "42"}), "{c}: {o}");
        assert_eq!(r[2]["is_main_result"], true, "{c}: {o}");
        // A statement last: no main result.
        let o = &run_cells(c, &["y = 1"])[0];
        assert_eq!(o["results"], json!([]), "{c}: {o}");
    });
}

#[test]
fn a_cell_that_raises_shows_its_own_lines() {
    for_each_combo(|c| {
        let o = &run_cells(c, &["a = 1\nb = 0\na / b"])[0];
        assert_eq!(o["status"], "error", "{c}: {o}");
        assert_eq!(o["error"]["type"], "ZeroDivisionError", "{c}: {o}");
        let tb = o["error"]["traceback"].as_str().unwrap_or_default();
        assert!(tb.contains("line 3") && tb.contains("a / b"), "{c}: {tb}");
    });
}

#[test]
fn a_session_keeps_state_across_cells() {
    for_each_combo(|c| {
        if c.path != ExecPath::Session {
            return;
        }
        let o = run_cells(c, &["n = 40", "n + 2", "display(n)\nn = 0", "n"]);
        assert_eq!(o[1]["results"][0]["data"]["text/plain"], "42", "{c}: {o:?}");
        assert_eq!(o[2]["results"][0]["data"]["text/plain"], "40", "{c}: {o:?}");
        assert_eq!(o[3]["results"][0]["data"]["text/plain"], "0", "{c}: {o:?}");
    });
}
