//! The document's shape: OpenAPI 3.1, every operation listed, the edit's
//! bounds as utoipa cannot write them.

use super::*;

#[test]
fn the_document_is_openapi_3_1_and_lists_every_operation() {
    let document = document_json();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/catalogue", &["get"][..]),
        ("/api/openapi.json", &["get"]),
        ("/api/videos", &["get", "post"]),
        ("/api/videos/{id}", &["get", "patch", "delete"]),
        ("/api/jobs", &["get"]),
        ("/api/jobs/{id}", &["get"]),
        ("/api/jobs/{id}/cancel", &["post"]),
        ("/api/jobs/{id}/retry", &["post"]),
        ("/api/tokens", &["post"]),
        ("/api/admin-tokens", &["get", "post"]),
        ("/api/admin-tokens/{name}", &["delete"]),
        ("/api/keys", &["get", "post"]),
        ("/api/keys/{id}/retire", &["post"]),
        ("/api/cluster", &["get"]),
        ("/api/purge", &["post"]),
    ] {
        let operations = paths[path].as_object().unwrap_or_else(|| panic!("{path}"));
        let mut listed: Vec<&str> = operations.keys().map(String::as_str).collect();
        listed.sort_unstable();
        let mut expected = methods.to_vec();
        expected.sort_unstable();
        assert_eq!(listed, expected, "{path}");
    }
    assert_eq!(paths.len(), 15);
    let edit = &document["components"]["schemas"]["VideoEdit"];
    assert_eq!(edit["minProperties"], 1, "{edit}");
    assert_eq!(edit["maxProperties"], serde_json::Value::Null, "{edit}");
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}
