"""The native HTTP API against its own OpenAPI document: real answers of a real server (the
"full" preset: numpy, pandas and matplotlib importable) validated against the schemas the server
publishes at /openapi.json. The protocol details (statuses, streaming timing, sessions, drain)
are tested over raw TCP in crates/cli/tests/server.rs."""

import base64
import json
import urllib.request

import jsonschema
import pytest
import referencing


def call(server, method, path, body=None, accept=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=data, method=method)
    if accept:
        req.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.fixture(scope="module")
def validate(server):
    status, _, body = call(server, "GET", "/openapi.json")
    assert status == 200
    doc = json.loads(body)
    assert doc["openapi"].startswith("3.1")
    resource = referencing.Resource.from_contents(
        doc, default_specification=referencing.jsonschema.DRAFT202012
    )
    registry = referencing.Registry().with_resource("urn:pysandbox", resource)

    def check(instance, name):
        schema = {"$ref": "urn:pysandbox#/components/schemas/" + name}
        jsonschema.Draft202012Validator(schema, registry=registry).validate(instance)

    check.doc = doc
    return check


def test_outcomes_match_the_published_schema(server, validate):
    code = (
        "import matplotlib.pyplot as plt, pandas as pd\n"
        "plt.plot([1, 2, 3])\n"
        "open('out.txt', 'w').write('made')\n"
        "pd.DataFrame({'a': [1, 2]})\n"
    )
    status, _, body = call(server, "POST", "/v1/execute",
                           {"code": code, "mode": "cell", "collect": ["*.txt"]})  # fmt: skip
    assert status == 200
    outcome = json.loads(body)
    validate(outcome, "Outcome")
    mimes = {m for r in outcome["results"] for m in r["data"]}
    assert {"image/png", "text/html"} <= mimes
    assert base64.b64decode(outcome["files"]["out.txt"]) == b"made"

    status, _, body = call(server, "POST", "/v1/execute", {"code": "1/0"})
    failed = json.loads(body)
    validate(failed, "Outcome")
    assert failed["error"]["type"] == "ZeroDivisionError"

    # A refused request is an outcome too (status sandbox_error).
    status, _, body = call(server, "POST", "/v1/execute", {"code": "1", "limits": {"wall": "1h"}})
    assert status == 403
    validate(json.loads(body), "Outcome")
    with pytest.raises(jsonschema.ValidationError):
        validate({"status": "fine"}, "Outcome")


def test_stream_batch_judge_and_sessions_match_the_schema(server, validate):
    _, headers, body = call(server, "POST", "/v1/execute",
                            {"code": "print(1)\nfrom IPython.display import display, Markdown\n"
                                     "display(Markdown('**hi**'))\nraise KeyError('k')",
                             "mode": "cell"},
                            accept="application/x-ndjson")  # fmt: skip
    assert headers["Content-Type"].startswith("application/x-ndjson")
    events = [json.loads(line) for line in body.splitlines()]
    for e in events:
        validate(e, "StreamEvent")
    # Output lines as printed (stdout is line-buffered for a streaming caller); the results and
    # the error when the run ends; the outcome last.
    assert [e["type"] for e in events] == ["stdout", "stderr", "result", "error", "end"]

    _, _, body = call(server, "POST", "/v1/batch", [{"code": "print(2)"}, {"code": "exit(3)"}])
    batch = json.loads(body)
    validate(batch, "BatchResponse")
    assert [o["exit_code"] for o in batch] == [0, 3]

    _, _, body = call(server, "POST", "/v1/judge",
                      {"code": "print(int(input()) * 2)",
                       "cases": [{"stdin": "2\n", "expected": "4\n"}, {"stdin": "3\n", "expected": "5\n"}]})  # fmt: skip
    judged = json.loads(body)
    validate(judged, "JudgeResult")
    assert [c["verdict"] for c in judged["cases"]] == ["AC", "WA"]

    status, _, body = call(server, "POST", "/v1/sessions", {"idle_timeout": 30})
    assert status == 201
    created = json.loads(body)
    validate(created, "SessionCreated")
    assert call(server, "DELETE", "/v1/sessions/" + created["id"])[0] == 204


def test_requests_the_schema_refuses_the_server_refuses(server, validate):
    for bad in ({"code": "1", "colour": 1}, {"code": 1}, {"stdin": "x"}):
        with pytest.raises(jsonschema.ValidationError):
            validate(bad, "ExecuteRequest")
        status, _, body = call(server, "POST", "/v1/execute", bad)
        assert status == 400, body
    good = {"code": "print(1)", "stdin": "", "args": ["a"], "files": {}, "collect": [],
            "mode": "script", "limits": {"wall": "2s"}, "features": ["math"]}  # fmt: skip
    validate(good, "ExecuteRequest")
    assert call(server, "POST", "/v1/execute", good)[0] == 200


def test_info_names_the_python_and_the_packages(server):
    _, _, body = call(server, "GET", "/v1/info")
    info = json.loads(body)
    import platform

    assert info["python"] == platform.python_version()
    names = {p["name"] for p in info["packages"]}
    assert {"numpy", "pandas", "matplotlib"} <= names
    import numpy

    assert {"name": "numpy", "version": numpy.__version__} in info["packages"]
    assert info["policy"]["preset"] == "full"
    assert info["kernel"]["landlock_abi"] >= 1
