// The pysandbox playground's script (served at /playground.js with playground.html; see
// playground.rs). Rule: text from the sandbox is only ever set with textContent, attributes set
// as properties, or a data: URL of an image; a result's text/html goes to an iframe with
// sandbox="" (no scripts, an opaque origin). The page's CSP allows this file and no inline script.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "pysandbox-token";
  const state = { info: null, session: null, opening: null, running: false, urls: [], timer: null };

  // ---- small DOM helpers: text only, never markup -------------------------------------------
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function fmtBytes(n) {
    if (typeof n !== "number" || !isFinite(n)) return "—";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + u[i];
  }
  function fmtSecs(s) {
    if (typeof s !== "number" || !isFinite(s)) return "—";
    return s < 1 ? (s * 1000).toFixed(1) + " ms" : s.toFixed(2) + " s";
  }

  // ---- authentication ------------------------------------------------------------------------
  function token() { try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; } }
  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const t = token();
    if (t) h["Authorization"] = "Bearer " + t;
    return h;
  }
  function needToken(why) {
    $("token-row").hidden = false;
    $("token").focus();
    if (why) setInfo(why);
  }
  $("token").value = token();
  if (token()) $("token-row").hidden = false;
  $("token").addEventListener("change", () => {
    try { sessionStorage.setItem(TOKEN_KEY, $("token").value.trim()); } catch (e) { /* private mode */ }
    loadInfo();
  });

  function setInfo(text) { $("server-info").textContent = text; }

  // ---- the server's policy: GET /v1/info -----------------------------------------------------
  async function loadInfo() {
    let r;
    try { r = await fetch("/v1/info", { headers: headers() }); }
    catch (e) { setInfo("server unreachable: " + e.message); return; }
    if (r.status === 401) { needToken("this server needs a token"); return; }
    if (!r.ok) { setInfo("GET /v1/info: HTTP " + r.status); return; }
    const info = await r.json();
    state.info = info;
    const pol = info.policy || {};
    setInfo("pysandbox " + (info.pysandbox || "?") + " · Python " + (info.python || "?") +
            " · preset " + (pol.preset || "?") + " · " + (info.workers || "?") + " workers");
    const l = pol.limits || {};
    if (l.wall) $("limit-wall").placeholder = l.wall;
    if (l.memory) $("limit-memory").placeholder = l.memory;
    showLimits(null);
  }

  // The limits a run gets: the server's, lowered by the page's wall and memory fields.
  function askedLimits() {
    const out = {};
    const wall = $("limit-wall").value.trim();
    const mem = $("limit-memory").value.trim();
    if (wall) out.wall = wall;
    if (mem) out.memory = mem;
    return out;
  }
  function showLimits(outcome) {
    const box = $("limits");
    clear(box);
    if (!state.info) return;
    const l = Object.assign({}, (state.info.policy || {}).limits || {}, askedLimits());
    const parts = [];
    for (const k of ["wall", "cpu", "memory", "processes", "open_files", "file_size", "tmp_size", "output"]) {
      if (k in l) parts.push(k + " " + (l[k] === null ? "none" : l[k]));
    }
    box.appendChild(el("span", "", "limits: " + parts.join(" · ")));
    if (outcome && outcome.limit) {
      box.appendChild(el("span", "", "  — this run stopped at its " + outcome.limit + " limit"));
    }
  }
  $("limit-wall").addEventListener("input", () => showLimits(null));
  $("limit-memory").addEventListener("input", () => showLimits(null));

  // ---- the editor ----------------------------------------------------------------------------
  const code = $("code");
  let escaped = false;  // Esc then Tab: let focus leave the editor
  function insert(text) {
    // execCommand keeps the browser's undo history; setRangeText where it is refused.
    if (!document.execCommand || !document.execCommand("insertText", false, text)) {
      code.setRangeText(text, code.selectionStart, code.selectionEnd, "end");
    }
  }
  code.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); run(); return; }
    if (ev.key === "Escape") { escaped = true; return; }
    if (ev.key === "Tab" && !escaped && !ev.ctrlKey && !ev.altKey && !ev.metaKey) {
      ev.preventDefault();
      const v = code.value, s = code.selectionStart, e = code.selectionEnd;
      if (s === e && !ev.shiftKey) { insert("    "); return; }
      // Indent or dedent every selected line.
      const start = v.lastIndexOf("\n", s - 1) + 1;
      const block = v.slice(start, e);
      const lines = block.split("\n");
      const changed = lines.map((ln) => ev.shiftKey ? ln.replace(/^ {1,4}|^\t/, "") : "    " + ln).join("\n");
      code.setSelectionRange(start, e);
      insert(changed);
      code.setSelectionRange(start, start + changed.length);
      return;
    }
    escaped = false;
    if (ev.key === "Enter" && !ev.shiftKey && !ev.altKey) {
      // Keep the line's indentation, one level more after a colon.
      const v = code.value, s = code.selectionStart;
      const line = v.slice(v.lastIndexOf("\n", s - 1) + 1, s);
      let indent = (line.match(/^[ \t]*/) || [""])[0];
      if (/:\s*$/.test(line)) indent += "    ";
      ev.preventDefault();
      insert("\n" + indent);
    }
  });

  // ---- sessions: POST /v1/sessions, DELETE /v1/sessions/{id} ---------------------------------
  function sessionLabel() {
    const s = $("session-state");
    if (state.session) {
      s.textContent = "state kept · " + state.session.id.slice(0, 8);
      s.className = "hint session-on";
      s.title = "session " + state.session.id + ", ends if idle past " + state.session.expires_at;
    } else {
      s.textContent = "";
      s.className = "hint";
      s.title = "";
    }
  }
  // A run started while the session opens waits for it (else it would run without the state).
  function openSession() {
    state.opening = doOpenSession().finally(() => { state.opening = null; });
    return state.opening;
  }
  async function doOpenSession() {
    const box = $("session");
    box.disabled = true;
    try {
      const lim = askedLimits();
      const body = Object.keys(lim).length ? { limits: lim } : {};
      const r = await fetch("/v1/sessions", {
        method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body),
      });
      if (r.status === 401) { needToken("this server needs a token"); box.checked = false; return; }
      const j = await r.json().catch(() => null);
      if (!r.ok || !j || typeof j.id !== "string") {
        box.checked = false;
        failure("could not open a session", j);
        return;
      }
      state.session = { id: j.id, expires_at: j.expires_at };
    } catch (e) {
      box.checked = false;
      failure("could not open a session: " + e.message, null);
    } finally {
      box.disabled = false;
      sessionLabel();
    }
  }
  async function closeSession(keepalive) {
    const s = state.session;
    state.session = null;
    sessionLabel();
    if (!s) return;
    try {
      await fetch("/v1/sessions/" + encodeURIComponent(s.id), {
        method: "DELETE", headers: headers(), keepalive: !!keepalive,
      });
    } catch (e) { /* it ends on its idle timeout anyway */ }
  }
  $("session").addEventListener("change", () => {
    if ($("session").checked) openSession(); else closeSession(false);
  });
  window.addEventListener("pagehide", () => { if (state.session) closeSession(true); });

  // ---- output --------------------------------------------------------------------------------
  function out(kind, text) {
    const c = $("console");
    const last = c.lastChild;
    if (last && last.className === kind) last.textContent += text;
    else c.appendChild(el("span", kind, text));
    c.scrollTop = c.scrollHeight;
  }

  const B64 = /^[A-Za-z0-9+/=\s]*$/;
  function image(src) {
    const img = el("img");
    img.alt = "image result";
    img.src = src;
    return img;
  }
  // An iframe's height from the HTML's rows (a sandboxed frame cannot be measured from here).
  function frameHeight(html) {
    const rows = (html.match(/<tr[\s>]/gi) || []).length;
    const lines = (html.match(/<br|<p[\s>]|<li[\s>]|<h\d|\n/gi) || []).length;
    return Math.max(60, Math.min(520, 36 + 25 * rows + (rows ? 0 : 18 * Math.min(lines, 20))));
  }
  const FRAME_HEAD =
    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'; img-src data:">' +
    "<style>body{margin:4px;font:13px system-ui,sans-serif;color:#1d2330}" +
    "table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #d9dde4;padding:3px 8px;text-align:right}" +
    "thead th{background:#f0f2f5}tbody tr:nth-child(even){background:#f8f9fb}</style>";
  function htmlFrame(html) {
    const f = document.createElement("iframe");
    // sandbox="" grants nothing: no scripts, no forms, no popups, no navigation of this page,
    // and an opaque origin that cannot read or touch it.
    f.setAttribute("sandbox", "");
    f.setAttribute("referrerpolicy", "no-referrer");
    f.title = "HTML result (sandboxed)";
    f.srcdoc = FRAME_HEAD + html;
    f.style.height = frameHeight(html) + "px";
    return f;
  }
  // What to show for a MIME type of a bundle, or null if it cannot be shown.
  function view(mime, data) {
    if (typeof data !== "string") return null;
    if ((mime === "image/png" || mime === "image/jpeg" || mime === "image/gif") && B64.test(data)) {
      return image("data:" + mime + ";base64," + data.replace(/\s/g, ""));
    }
    if (mime === "image/svg+xml") {
      // As an image: an SVG's scripts do not run in <img>.
      return image("data:image/svg+xml;charset=utf-8," + encodeURIComponent(data));
    }
    if (mime === "text/html") return htmlFrame(data);
    if (mime.startsWith("text/") || mime.endsWith("json")) return el("pre", "", data);
    return null;
  }
  const PREFERRED = ["image/png", "image/jpeg", "image/gif", "image/svg+xml", "text/html",
                     "text/markdown", "text/latex", "application/json", "text/plain"];
  function result(r) {
    const data = (r && typeof r.data === "object" && r.data) || {};
    const mimes = Object.keys(data).filter((m) => typeof data[m] === "string");
    mimes.sort((a, b) => {
      const ia = PREFERRED.indexOf(a), ib = PREFERRED.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
    });
    const box = el("div", "result" + (r.is_main_result ? " main" : ""));
    const bar = el("div", "mimes");
    bar.appendChild(el("span", "", r.is_main_result ? "Out:" : "display:"));
    const body = el("div", "body");
    const show = (m) => {
      clear(body);
      body.appendChild(view(m, data[m]) || el("pre", "", String(data[m])));
      for (const b of bar.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.mime === m));
      box.dataset.shown = m;
    };
    for (const m of mimes) {
      const b = el("button", "", m);
      b.type = "button";
      b.dataset.mime = m;
      b.addEventListener("click", () => show(m));
      bar.appendChild(b);
    }
    box.appendChild(bar);
    box.appendChild(body);
    if (mimes.length) show(mimes[0]);
    $("results").appendChild(box);
    $("results-box").hidden = false;
  }

  // A traceback as Python prints it, its parts highlighted (text nodes only).
  function traceback(err) {
    const pre = $("traceback");
    clear(pre);
    const text = (err && (err.traceback || "")) || "";
    const head = ((err && err.type) || "Error") + ": " + ((err && err.message) || "");
    const lines = text ? text.replace(/\n$/, "").split("\n") : [];
    const fileLine = /^(\s*File )"([^"]*)"(, line )(\d+)(, in )?(.*)$/;
    for (const ln of lines) {
      const m = ln.match(fileLine);
      const row = el("span");
      if (m) {
        row.appendChild(document.createTextNode(m[1]));
        row.appendChild(el("span", "file", '"' + m[2] + '"'));
        row.appendChild(document.createTextNode(m[3]));
        row.appendChild(el("span", "lineno", m[4]));
        if (m[5]) { row.appendChild(document.createTextNode(m[5])); row.appendChild(el("span", "func", m[6])); }
      } else if (/^\s+[~^]+\s*$/.test(ln)) {
        row.className = "caret"; row.textContent = ln;
      } else if (/^\s{4}\S/.test(ln)) {
        row.className = "src"; row.textContent = ln;
      } else if (err && err.type && ln.startsWith(err.type)) {
        row.className = "head"; row.textContent = ln;
      } else {
        row.textContent = ln;
      }
      pre.appendChild(row);
      pre.appendChild(document.createTextNode("\n"));
    }
    if (!lines.some((l) => l.startsWith(head.split(":")[0]))) pre.appendChild(el("span", "head", head));
    $("error-box").hidden = false;
  }

  function files(outcome) {
    const box = $("files");
    clear(box);
    const fs = (outcome && outcome.files) || {};
    const names = Object.keys(fs).sort();
    for (const name of names) {
      const b64 = fs[name];
      if (typeof b64 !== "string" || !B64.test(b64)) continue;
      let bytes;
      try {
        const bin = atob(b64.replace(/\s/g, ""));
        bytes = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      } catch (e) { continue; }
      const url = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
      state.urls.push(url);
      const a = el("a", "", name + " (" + fmtBytes(bytes.length) + ")");
      a.href = url;
      a.download = name.split("/").pop() || "file";
      a.title = name;
      a.dataset.name = name;
      box.appendChild(a);
    }
    if (outcome && outcome.files_truncated) box.appendChild(el("span", "hint", "some files were left out (too large)"));
    $("files-box").hidden = !box.firstChild;
  }

  function stats(outcome) {
    outcome = outcome || {};
    const box = $("stats");
    clear(box);
    const st = (outcome && outcome.status) || "sandbox_error";
    box.appendChild(Object.assign(el("span", "badge " + st, st), { id: "status" }));
    const add = (label, value) => {
      const s = el("span", "stat", label + " " + value);
      s.dataset.stat = label;
      box.appendChild(s);
    };
    if (outcome.limit) add("limit", outcome.limit);
    if (typeof outcome.exit_code === "number") add("exit", outcome.exit_code);
    if (typeof outcome.signal === "number") add("signal", outcome.signal);
    add("wall", fmtSecs(outcome.wall_time));
    add("cpu", fmtSecs(outcome.cpu_time));
    add("memory", fmtBytes(outcome.peak_memory));
    if (state.session) add("session", "on");
  }

  function failure(what, outcome) {
    const err = (outcome && outcome.error) || { type: "sandbox_error", message: what, traceback: "" };
    if (outcome && outcome.error) err.message = what + ": " + outcome.error.message;
    traceback(err);
  }

  // ---- a run: POST /v1/execute (or the session's), reading JSON lines as they come ----------
  function resetOutput() {
    for (const u of state.urls) URL.revokeObjectURL(u);
    state.urls = [];
    for (const id of ["console", "traceback", "results", "files"]) clear($(id));
    for (const id of ["error-box", "results-box", "files-box"]) $(id).hidden = true;
  }
  function running(on) {
    state.running = on;
    $("run").disabled = on;
    clearInterval(state.timer);
    if (on) {
      const t0 = performance.now();
      const box = $("stats");
      clear(box);
      const badge = Object.assign(el("span", "badge running", "running"), { id: "status" });
      const clock = el("span", "stat", "");
      box.appendChild(badge);
      box.appendChild(clock);
      state.timer = setInterval(() => { clock.textContent = ((performance.now() - t0) / 1000).toFixed(1) + " s"; }, 100);
    }
  }

  function handle(ev, seen) {
    switch (ev && ev.type) {
      case "stdout": out("stdout", String(ev.text)); break;
      case "stderr": out("stderr", String(ev.text)); break;
      case "result": result(ev); break;
      case "error": traceback(ev.error); seen.error = true; break;
      case "end": end(ev.outcome || {}, seen); break;
    }
  }
  function end(outcome, seen) {
    seen.end = true;
    stats(outcome);
    showLimits(outcome);
    files(outcome);
    if (outcome.error && !seen.error) traceback(outcome.error);
    if (outcome.stdout_truncated || outcome.stderr_truncated) out("note", "\n[output cut at the output limit]\n");
    if (outcome.ended && state.session) {
      state.session = null;
      $("session").checked = false;
      sessionLabel();
      out("note", "\n[the session ended with this run: its state is gone]\n");
    }
  }

  async function run() {
    if (state.running) return;
    resetOutput();
    running(true);
    if (state.opening) await state.opening;
    const seen = { end: false, error: false };
    const body = { code: code.value, mode: $("mode").value };
    const collect = $("collect").value.split(/[\s,]+/).filter(Boolean);
    if (collect.length) body.collect = collect;
    const stdin = $("stdin").value;
    if (stdin) body.stdin = stdin;
    const lim = askedLimits();
    if (Object.keys(lim).length) body.limits = lim;
    const url = state.session
      ? "/v1/sessions/" + encodeURIComponent(state.session.id) + "/execute"
      : "/v1/execute";
    try {
      const r = await fetch(url, {
        method: "POST",
        headers: headers({ "Content-Type": "application/json", "Accept": "application/x-ndjson" }),
        body: JSON.stringify(body),
      });
      const type = r.headers.get("content-type") || "";
      if (!type.includes("application/x-ndjson")) {
        // Refused before running (400, 401, 403, 404, 429): one outcome as JSON.
        const o = await r.json().catch(() => null);
        if (r.status === 401) needToken("this server needs a token");
        if (r.status === 404 && state.session) {
          state.session = null;
          $("session").checked = false;
          sessionLabel();
        }
        end(o || { status: "sandbox_error" }, seen);
        if (!o || !o.error) failure("HTTP " + r.status, o);
        return;
      }
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line.trim()) handle(JSON.parse(line), seen);
        }
      }
      if (buf.trim()) handle(JSON.parse(buf), seen);
      if (!seen.end) failure("the connection closed before the run's end", null);
    } catch (e) {
      failure("the request failed: " + e.message, null);
      if (!seen.end) stats({ status: "sandbox_error" });
    } finally {
      running(false);
    }
  }
  $("run").addEventListener("click", run);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey) && ev.target !== code) { ev.preventDefault(); run(); }
  });

  loadInfo();
})();
