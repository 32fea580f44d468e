//! `GET /openapi.json`: the native API described as OpenAPI 3.1. The bodies' schemas are
//! generated from the very types the handlers parse and answer with (`schemars`, JSON Schema
//! 2020-12, which OpenAPI 3.1 uses as is); the paths are written here, and a test checks them
//! against the routes the router serves (`crate::api_routes`).

use crate::native::{ExecuteRequest, JudgeRequest, SessionCreated, SessionRequest, StreamEvent};
use pysandbox_core::judge::JudgeResult;
use pysandbox_core::outcome::Outcome;
use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

/// The document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    // Each named type becomes a definition of its own; the two arrays are named here.
    let mut arrays = Map::new();
    let _ = generator.subschema_for::<ExecuteRequest>();
    let _ = generator.subschema_for::<Outcome>();
    let _ = generator.subschema_for::<JudgeRequest>();
    let _ = generator.subschema_for::<JudgeResult>();
    let _ = generator.subschema_for::<SessionRequest>();
    let _ = generator.subschema_for::<SessionCreated>();
    let _ = generator.subschema_for::<StreamEvent>();
    arrays.insert(
        "BatchRequest".to_string(),
        generator.subschema_for::<Vec<ExecuteRequest>>().to_value(),
    );
    arrays.insert(
        "BatchResponse".to_string(),
        generator.subschema_for::<Vec<Outcome>>().to_value(),
    );
    let mut schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    schemas.extend(arrays);
    let body = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let json_body = |name: &str| json!({"required": true, "content": {"application/json": {"schema": body(name)}}});
    let outcome = json!({
        "description": "The run's outcome (its `status` says how it went); a sandbox error carries the error table's HTTP status",
        "content": {
            "application/json": {"schema": body("Outcome")},
            "application/x-ndjson": {"schema": body("StreamEvent"),
                "description": "With `Accept: application/x-ndjson`: one event per line as the run goes, the last `end` carrying the outcome"}
        }
    });
    let error = |what: &str| json!({"description": what, "content": {"application/json": {"schema": body("Outcome")}}});
    let errors = json!({
        "400": error("A malformed body: `error.message` names the field"),
        "401": error("A token is needed (`Authorization: Bearer`)"),
        "403": error("The request widens the server's policy: `error.message` names the field"),
        "408": error("The body did not arrive within `--body-timeout`"),
        "413": error("The body is larger than `--max-body`"),
        "429": error("Every worker busy and the queue full, or too many sessions: retry after `Retry-After` seconds"),
    });
    let with_errors = |mut ok: Map<String, Value>| {
        if let Value::Object(e) = &errors {
            for (k, v) in e {
                ok.insert(k.clone(), v.clone());
            }
        }
        Value::Object(ok)
    };
    let id = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string"}});
    let path = json!({"name": "path", "in": "path", "required": true,
        "description": "A relative name in the session's working directory", "schema": {"type": "string"}});
    let text = |what: &str| json!({"description": what, "content": {"text/plain": {"schema": {"type": "string"}}}});
    let responses = |pairs: &[(&str, Value)]| {
        with_errors(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "pysandbox server",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Untrusted Python in a fresh Linux sandbox per request, over a warm pool. A request may narrow the operator's policy (`limits`, `features`), never widen it.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/execute": {"post": {
                "summary": "Run code in a fresh sandbox",
                "requestBody": json_body("ExecuteRequest"),
                "responses": responses(&[("200", outcome.clone())]),
            }},
            "/v1/batch": {"post": {
                "summary": "Run many requests (a JSON array, or JSON lines); the outcomes in order",
                "requestBody": {"required": true, "content": {
                    "application/json": {"schema": body("BatchRequest")},
                    "application/x-ndjson": {"schema": body("ExecuteRequest")},
                }},
                "responses": responses(&[("200", json!({"description": "One outcome per request, in order",
                    "content": {"application/json": {"schema": body("BatchResponse")}}}))]),
            }},
            "/v1/judge": {"post": {
                "summary": "One program against many stdin cases",
                "requestBody": json_body("JudgeRequest"),
                "responses": responses(&[("200", json!({"description": "A verdict per case, and the totals",
                    "content": {"application/json": {"schema": body("JudgeResult")}}}))]),
            }},
            "/v1/sessions": {"post": {
                "summary": "Open a session: one sandbox whose state lives across calls",
                "requestBody": {"required": false, "content": {"application/json": {"schema": body("SessionRequest")}}},
                "responses": responses(&[("201", json!({"description": "The session",
                    "content": {"application/json": {"schema": body("SessionCreated")}}}))]),
            }},
            "/v1/sessions/{id}": {"delete": {
                "summary": "Close a session",
                "parameters": [id.clone()],
                "responses": {"204": {"description": "Closed"}, "404": {"description": "No such session"}},
            }},
            "/v1/sessions/{id}/execute": {"post": {
                "summary": "Run code in a session (its globals and working directory kept)",
                "parameters": [id.clone()],
                "requestBody": json_body("ExecuteRequest"),
                "responses": responses(&[("200", outcome), ("404", error("No such session"))]),
            }},
            "/v1/sessions/{id}/files/{path}": {
                "put": {
                    "summary": "Place a file in the session's working directory",
                    "parameters": [id.clone(), path.clone()],
                    "requestBody": {"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}},
                    "responses": responses(&[("204", json!({"description": "Placed"})), ("404", error("No such session"))]),
                },
                "get": {
                    "summary": "A regular file of the session's working directory",
                    "parameters": [id, path],
                    "responses": responses(&[("200", json!({"description": "Its bytes",
                        "content": {"application/octet-stream": {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}}})),
                        ("404", error("No such session or file"))]),
                },
            },
            "/v1/info": {"get": {
                "summary": "Python version, the policy ceiling, packages importable, kernel features in use",
                "responses": {"200": {"description": "The server", "content": {"application/json": {"schema": {"type": "object"}}}}},
            }},
            "/healthz": {"get": {"summary": "The process answers (no token needed)", "security": [],
                "responses": {"200": text("ok")}}},
            "/readyz": {"get": {"summary": "Workers are warm", "responses": {"200": text("ready"), "503": text("not ready")}}},
            "/metrics": {"get": {"summary": "Prometheus text", "responses": {"200": text("metrics")}}},
        },
    })
}

/// `GET /openapi.json`.
pub async fn serve() -> axum::response::Response {
    use axum::response::IntoResponse;
    axum::Json(document()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_every_route_is_described() {
        let doc = document();
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(all.len() > 10);
        for r in all {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{r}"));
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{r} does not resolve"
            );
        }
        let served: Vec<(&str, String)> = crate::api_routes()
            .into_iter()
            .map(|(method, path, _)| (method, path.replace("{*", "{")))
            .collect();
        for (method, path) in &served {
            assert!(
                doc["paths"][path.as_str()].get(*method).is_some(),
                "{method} {path} is served but not described"
            );
        }
        let described: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        // Nothing described that is not served.
        assert_eq!(described, served.len());
        // The outcome's fields are the core's.
        let outcome = &doc["components"]["schemas"]["Outcome"]["properties"];
        for field in [
            "status",
            "limit",
            "stdout",
            "error",
            "results",
            "files",
            "wall_time",
        ] {
            assert!(outcome.get(field).is_some(), "Outcome.{field}");
        }
        let exec = &doc["components"]["schemas"]["ExecuteRequest"]["properties"];
        for field in [
            "code", "stdin", "args", "files", "collect", "mode", "limits", "features",
        ] {
            assert!(exec.get(field).is_some(), "ExecuteRequest.{field}");
        }
    }
}
