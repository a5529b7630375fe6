//! A validator for the part of JSON Schema that Swagger 2.0 definitions use: `type`,
//! `properties`, `items`, `additionalProperties`, `enum`, `$ref` to `#/definitions/...` and
//! the `x-nullable` extension; `format` is not checked beyond unsigned integers.
//!
//! Every property a definition lists must be present (Mailpit always emits all of them).
//! Against Mailpit's document, properties it does not list are allowed (Tern's extensions,
//! such as `Message.Envelope`); against Tern's own document they are errors, so the document
//! stays complete.

use std::sync::OnceLock;

use serde_json::Value;

/// An OpenAPI 2.0 document to validate against.
pub struct Spec {
    name: &'static str,
    doc: Value,
    /// Reject properties the schema does not list.
    strict: bool,
}

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// Mailpit's published API description, kept in the repository
/// (`tests/api/reference/mailpit-swagger.json`, with its source and licence beside it).
pub fn mailpit() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec {
        name: "Mailpit",
        doc: load(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/reference/mailpit-swagger.json")),
        strict: false,
    })
}

/// Tern's own description, as served at `/api/v1/openapi.json`.
pub fn tern() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec {
        name: "Tern",
        doc: load(concat!(env!("CARGO_MANIFEST_DIR"), "/../http/openapi.json")),
        strict: true,
    })
}

impl Spec {
    /// Panics listing every way `value` departs from `reference`: a definition name
    /// (`Message`) or a pointer into the document (`#/responses/SendMessageResponse`; a
    /// response's `schema` is used).
    pub fn check(&self, reference: &str, value: &Value) {
        let errors = self.errors(reference, value);
        assert!(
            errors.is_empty(),
            "response does not match {} {reference}:\n  {}\nresponse: {value:#}",
            self.name,
            errors.join("\n  ")
        );
    }

    /// Every departure of `value` from `reference`.
    pub fn errors(&self, reference: &str, value: &Value) -> Vec<String> {
        let pointer = if reference.starts_with("#/") {
            reference.to_string()
        } else {
            format!("#/definitions/{reference}")
        };
        let mut schema = self.resolve(&pointer);
        if let Some(inner) = schema.get("schema") {
            schema = inner;
        }
        let mut errors = Vec::new();
        self.validate(schema, value, "$", &mut errors);
        errors
    }

    fn resolve(&self, reference: &str) -> &Value {
        let pointer = reference.strip_prefix('#').unwrap_or(reference);
        self.doc.pointer(pointer).unwrap_or_else(|| panic!("{} has no {reference}", self.name))
    }

    fn validate(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        if let Some(Value::String(reference)) = schema.get("$ref") {
            return self.validate(self.resolve(reference), value, at, errors);
        }
        if value.is_null() && schema.get("x-nullable") == Some(&Value::Bool(true)) {
            return;
        }
        if let Some(Value::Array(allowed)) = schema.get("enum")
            && !allowed.contains(value)
        {
            errors.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
        let ty = schema.get("type").and_then(Value::as_str);
        let type_ok = match ty {
            None => true,
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("boolean") => value.is_boolean(),
            Some("number") => value.is_number(),
            Some("integer") => match schema.get("format").and_then(Value::as_str) {
                Some("uint64" | "uint32" | "uint16" | "uint8") => value.is_u64(),
                _ => value.is_i64() || value.is_u64(),
            },
            Some(other) => {
                errors.push(format!("{at}: the schema uses an unsupported type {other:?}"));
                return;
            }
        };
        if !type_ok {
            errors.push(format!("{at}: expected {}, got {value}", ty.unwrap_or("any")));
            return;
        }
        if let (Some(items), Value::Array(list)) = (schema.get("items"), value) {
            for (i, item) in list.iter().enumerate() {
                self.validate(items, item, &format!("{at}[{i}]"), errors);
            }
        }
        let Value::Object(object) = value else { return };
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(properties) = properties {
            for (name, property) in properties {
                match object.get(name) {
                    Some(v) => self.validate(property, v, &format!("{at}.{name}"), errors),
                    None => errors.push(format!("{at}: missing property {name:?}")),
                }
            }
        }
        let listed = |name: &str| properties.is_some_and(|p| p.contains_key(name));
        match schema.get("additionalProperties") {
            Some(extra @ Value::Object(_)) => {
                for (name, v) in object.iter().filter(|(name, _)| !listed(name)) {
                    self.validate(extra, v, &format!("{at}.{name}"), errors);
                }
            }
            Some(Value::Bool(true)) => {}
            _ if self.strict && properties.is_some() => {
                for name in object.keys().filter(|name| !listed(name)) {
                    errors.push(format!("{at}: property {name:?} is not in the schema"));
                }
            }
            _ => {}
        }
    }
}

/// Validates against the definition in both documents (Mailpit-compatible endpoints).
pub fn check_both(mailpit_ref: &str, tern_ref: &str, value: &Value) {
    mailpit().check(mailpit_ref, value);
    tern().check(tern_ref, value);
}

#[test]
fn the_validator_reports_wrong_types_and_missing_properties() {
    let good = serde_json::json!({"Name": "A", "Address": "a@example.com"});
    assert!(mailpit().errors("Address", &good).is_empty());
    let errors = mailpit().errors("Address", &serde_json::json!({"Name": 1}));
    assert_eq!(errors.len(), 2, "{errors:?}");
    let extra = serde_json::json!({"Name": "A", "Address": "a@example.com", "Extra": true});
    assert!(mailpit().errors("Address", &extra).is_empty(), "Mailpit allows extensions");
    assert_eq!(tern().errors("Address", &extra).len(), 1, "Tern's own spec is complete");
    let deep = serde_json::json!({"total": 1, "unread": 0, "messages_count": 1,
        "messages_unread": 0, "start": 0, "tags": [],
        "messages": [{"ID": "x", "From": {"Name": "", "Address": 5}}]});
    let errors = mailpit().errors("MessagesSummary", &deep);
    assert!(errors.iter().any(|e| e.contains("$.messages[0].From.Address")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("missing property \"Snippet\"")), "{errors:?}");
    let negative = serde_json::json!({"ID": "x", "Links": []});
    assert!(tern().errors("Links", &negative).is_empty());
}
