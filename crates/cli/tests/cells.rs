//! Cell mode (issue 12): notebook semantics on every path and caller: the last expression's
//! value is the main result, `display()` adds results, each a MIME bundle from the object's
//! `_repr_*_` methods; tracebacks keep the cell's own line numbers; a session keeps state
//! across cells.

mod common;

use common::*;
use serde_json::{json, Value};

/// [`Combo::run_cells`] with the harness's flags.
fn run_cells(c: Combo, cells: &[&str]) -> Vec<Value> {
    c.run_cells(&[], cells, &RunOpts::default())
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
