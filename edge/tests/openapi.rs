//! `docs/openapi.json` describes the admin API the code serves: the same operations as
//! `admin::Route::ALL` (the table the admin listener dispatches through), the purge request and
//! receipt with exactly the code's fields, and examples the code accepts. A change on either side
//! without the other fails here, naming what differs.

use std::collections::BTreeSet;

use edge::admin::Route;
use edge::purge::{
    ForwardState, PurgeRequest, RECEIPT_FIELDS, REQUEST_FIELDS, Receipt, RegionReceipt,
};
use serde_json::Value;

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

/// The operation keys of an OpenAPI path item (everything else in it is not an operation).
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn spec() -> Value {
    let text = std::fs::read_to_string(SPEC).unwrap_or_else(|e| panic!("reading {SPEC}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{SPEC} is not valid JSON: {e}"))
}

/// A JSON pointer from plain path segments (`/` and `~` escaped, as in `/paths/~1purge`).
fn pointer(segments: &[&str]) -> String {
    segments
        .iter()
        .map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1")))
        .collect()
}

/// The value at `segments`, or a failure naming what the spec lacks.
fn at<'a>(spec: &'a Value, segments: &[&str]) -> &'a Value {
    let p = pointer(segments);
    spec.pointer(&p)
        .unwrap_or_else(|| panic!("docs/openapi.json has no {segments:?} (JSON pointer {p})"))
}

fn object_keys(v: &Value, what: &str) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("{what} is not a JSON object: {v}"))
        .keys()
        .cloned()
        .collect()
}

fn strings(v: &Value, what: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what} is not a JSON array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("{what} holds a non-string: {s}"))
                .to_owned()
        })
        .collect()
}

/// The set of `items`, failing if one is listed twice.
fn set_of<I: IntoIterator<Item = String>>(items: I, what: &str) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for item in items {
        let shown = item.clone();
        assert!(set.insert(item), "{what} lists {shown:?} twice");
    }
    set
}

/// Fails unless `spec` (what docs/openapi.json says) and `code` hold the same names, listing
/// what only one side has.
fn assert_same(what: &str, spec: &BTreeSet<String>, code_side: &str, code: &BTreeSet<String>) {
    let only_spec: Vec<&String> = spec.difference(code).collect();
    let only_code: Vec<&String> = code.difference(spec).collect();
    assert!(
        only_spec.is_empty() && only_code.is_empty(),
        "{what} differ between docs/openapi.json and {code_side}:\n  \
         only in docs/openapi.json: {only_spec:?}\n  only in {code_side}: {only_code:?}"
    );
}

fn schema<'a>(spec: &'a Value, name: &str) -> &'a Value {
    at(spec, &["components", "schemas", name])
}

fn properties(spec: &Value, name: &str) -> BTreeSet<String> {
    object_keys(
        at(spec, &["components", "schemas", name, "properties"]),
        &format!("components.schemas.{name}.properties"),
    )
}

fn fields(names: &[&str], what: &str) -> BTreeSet<String> {
    set_of(names.iter().map(|s| (*s).to_owned()), what)
}

#[test]
fn operations_are_exactly_the_admin_routes() {
    let spec = spec();
    let mut operations = Vec::new();
    for (path, item) in at(&spec, &["paths"])
        .as_object()
        .expect("paths is an object")
    {
        for key in object_keys(item, &format!("paths.{path}")) {
            if METHODS.contains(&key.as_str()) {
                operations.push(format!("{} {path}", key.to_ascii_uppercase()));
            }
        }
    }
    let in_spec = set_of(operations, "docs/openapi.json's operations");
    let routes = set_of(
        Route::ALL
            .iter()
            .map(|r| format!("{} {}", r.method(), r.template())),
        "edge::admin::Route::ALL",
    );
    assert_same(
        "operations (METHOD path)",
        &in_spec,
        "edge::admin::Route::ALL",
        &routes,
    );
}

#[test]
fn purge_operations_need_the_bearer_token_and_answer_every_documented_status() {
    let spec = spec();
    let scheme = at(&spec, &["components", "securitySchemes", "bearer"]);
    assert_eq!(scheme["type"], "http", "the bearer scheme: {scheme}");
    assert_eq!(scheme["scheme"], "bearer", "the bearer scheme: {scheme}");
    let expected: [(&str, &str, &[&str]); 2] = [
        ("/purge", "post", &["200", "400", "401", "413", "503"]),
        ("/purge/{id}", "get", &["200", "401", "404"]),
    ];
    for (path, method, statuses) in expected {
        let op = at(&spec, &["paths", path, method]);
        let security = op["security"].to_string();
        assert!(
            security.contains("\"bearer\""),
            "{method} {path} must require the bearer scheme; security: {security}"
        );
        let documented = object_keys(&op["responses"], &format!("{method} {path} responses"));
        let wanted = fields(statuses, "statuses");
        assert_same(
            &format!("{} {path} response statuses", method.to_ascii_uppercase()),
            &documented,
            "the statuses the admin API answers (edge/src/admin.rs)",
            &wanted,
        );
    }
    let unauthorized = at(&spec, &["components", "responses", "Unauthorized"]);
    assert!(
        unauthorized["headers"]
            .as_object()
            .is_some_and(|h| h.contains_key("WWW-Authenticate")),
        "a 401 carries WWW-Authenticate: Bearer; the spec's Unauthorized response does not say so"
    );
    for name in ["/healthz", "/readyz", "/metrics"] {
        let security = at(&spec, &["paths", name, "get", "security"]);
        assert_eq!(
            security,
            &Value::Array(Vec::new()),
            "GET {name} needs no token"
        );
    }
}

#[test]
fn purge_request_schema_has_exactly_the_request_fields() {
    let spec = spec();
    assert_same(
        "PurgeRequest properties",
        &properties(&spec, "PurgeRequest"),
        "edge::purge::REQUEST_FIELDS",
        &fields(&REQUEST_FIELDS, "REQUEST_FIELDS"),
    );
    assert_eq!(
        schema(&spec, "PurgeRequest")["additionalProperties"],
        Value::Bool(false),
        "PurgeRequest must say additionalProperties: false (the code refuses unknown fields)"
    );
}

#[test]
fn receipt_schema_has_exactly_the_receipt_fields_all_required() {
    let spec = spec();
    let code = fields(&RECEIPT_FIELDS, "RECEIPT_FIELDS");
    assert_same(
        "Receipt properties",
        &properties(&spec, "Receipt"),
        "edge::purge::RECEIPT_FIELDS",
        &code,
    );
    let required = set_of(
        strings(
            &schema(&spec, "Receipt")["required"],
            "components.schemas.Receipt.required",
        ),
        "components.schemas.Receipt.required",
    );
    assert_same(
        "Receipt required fields",
        &required,
        "edge::purge::RECEIPT_FIELDS",
        &code,
    );
}

#[test]
fn serialized_receipts_have_exactly_the_spec_properties() {
    let spec = spec();
    let receipt = serde_json::to_value(Receipt::default()).expect("serialize a receipt");
    assert_same(
        "Receipt properties",
        &properties(&spec, "Receipt"),
        "a serialized Receipt::default()",
        &object_keys(&receipt, "a serialized Receipt"),
    );

    // A region receipt with every optional field set has every property; one without has at
    // least the required ones.
    let region_props = properties(&spec, "RegionReceipt");
    let full = RegionReceipt {
        state: ForwardState::Failed,
        attempts: 8,
        error: Some("refused".to_owned()),
        applied: vec!["edge-a".to_owned()],
        pending: vec!["edge-b".to_owned()],
    };
    let full = serde_json::to_value(full).expect("serialize a region receipt");
    assert_same(
        "RegionReceipt properties",
        &region_props,
        "a serialized RegionReceipt with every field set",
        &object_keys(&full, "a serialized RegionReceipt"),
    );
    let bare = serde_json::to_value(RegionReceipt::default()).expect("serialize");
    let bare = object_keys(&bare, "a serialized RegionReceipt::default()");
    let required = set_of(
        strings(
            &schema(&spec, "RegionReceipt")["required"],
            "components.schemas.RegionReceipt.required",
        ),
        "components.schemas.RegionReceipt.required",
    );
    let missing: Vec<&String> = required.difference(&bare).collect();
    assert!(
        missing.is_empty(),
        "RegionReceipt fields the spec requires but RegionReceipt::default() does not \
         serialize: {missing:?}"
    );
}

/// Deserializes `example` as `T`, failing with the field at fault.
fn parses_as<T: serde::de::DeserializeOwned>(example: &Value, what: &str) -> T {
    let text = example.to_string();
    let de = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de).unwrap_or_else(|e| {
        panic!(
            "{what} does not parse as the code's type: at {}: {}\n  example: {text}",
            e.path(),
            e.inner()
        )
    })
}

#[test]
fn request_examples_are_accepted_by_the_code() {
    let spec = spec();
    let example = at(
        &spec,
        &[
            "paths",
            "/purge",
            "post",
            "requestBody",
            "content",
            "application/json",
            "example",
        ],
    );
    let req: PurgeRequest = parses_as(example, "the POST /purge request example");
    assert!(
        !req.urls.is_empty() || !req.prefixes.is_empty() || !req.tags.is_empty() || req.all,
        "the POST /purge request example purges nothing: {example}"
    );
    let examples = schema(&spec, "PurgeRequest")["examples"]
        .as_array()
        .expect("components.schemas.PurgeRequest.examples is an array");
    assert!(
        !examples.is_empty(),
        "PurgeRequest has no examples in docs/openapi.json"
    );
    for (i, example) in examples.iter().enumerate() {
        let _: PurgeRequest = parses_as(example, &format!("PurgeRequest example {i}"));
    }
}

#[test]
fn receipt_examples_are_what_the_code_serializes() {
    let spec = spec();
    for (path, method) in [("/purge", "post"), ("/purge/{id}", "get")] {
        let what = format!("the {} {path} receipt example", method.to_ascii_uppercase());
        let example = at(
            &spec,
            &[
                "paths",
                path,
                method,
                "responses",
                "200",
                "content",
                "application/json",
                "example",
            ],
        );
        let receipt: Receipt = parses_as(example, &what);
        let again = serde_json::to_value(&receipt).expect("serialize");
        assert_eq!(
            &again, example,
            "{what} is not what the code would send for the same receipt"
        );
    }
}

/// Every `$ref` in the spec points at something in it.
#[test]
fn every_reference_resolves() {
    fn walk(spec: &Value, v: &Value, broken: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let target = r.strip_prefix('#').and_then(|p| spec.pointer(p));
                    if target.is_none() {
                        broken.push(r.clone());
                    }
                }
                for child in map.values() {
                    walk(spec, child, broken);
                }
            }
            Value::Array(items) => {
                for child in items {
                    walk(spec, child, broken);
                }
            }
            _ => {}
        }
    }
    let spec = spec();
    let mut broken = Vec::new();
    walk(&spec, &spec, &mut broken);
    assert!(
        broken.is_empty(),
        "docs/openapi.json has references to nothing: {broken:?}"
    );
}
