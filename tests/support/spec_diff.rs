//! Compares two OpenAPI 3.0 documents for what they mean rather than how they are spelled, so
//! that a test can prove the served document says exactly what the committed spec says.
//!
//! `normalise` erases only the differences that a hand-written spec and poem-openapi 5.1's
//! output show without any change of meaning:
//!
//! - media type parameters (`application/json; charset=utf-8`) and the case of media types
//!   and response header names;
//! - default values, spelled out or left out: `deprecated`, `nullable`, `readOnly`,
//!   `writeOnly` and the like when false, a parameter's default `style`, `explode` where it
//!   is the default or changes nothing (a scalar); `required` of parameters, headers and
//!   request bodies is written out as `false` when absent;
//! - a component schema's `title` equal to its name;
//! - `1000.0` against `1000`, key order, the order of `required` and of the top-level tags,
//!   whitespace around descriptions, `Z` against `+00:00` in example date-times;
//! - named primitive schemas, which poem-openapi inlines at each use;
//! - a parameter's `example` written into its schema, and `allOf: [$ref]` around a reference.
//!
//! Everything else is kept, and `differences` reports each remaining mismatch with its path.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

const SCHEMA_REF_PREFIX: &str = "#/components/schemas/";
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `doc` with only its cosmetic differences erased (see the module documentation).
pub fn normalise(doc: &Value) -> Value {
    let Some(root) = doc.as_object() else {
        return canonical_numbers(doc);
    };
    let ctx = Context::new(root);
    let mut out = Map::new();
    for (key, value) in root {
        let value = match key.as_str() {
            "info" => trim_description(value),
            "servers" => map_array(value, trim_description),
            "tags" => tags(value),
            "paths" => map_values(value, |item| ctx.path_item(item)),
            "components" => ctx.components(value),
            _ => value.clone(),
        };
        out.insert(key.clone(), value);
    }
    canonical_numbers(&Value::Object(out))
}

/// One line per difference between the normalised documents, naming its JSON path, e.g.
/// `paths./orders.post.responses.409: missing in served`. Empty when they mean the same.
pub fn differences(committed: &Value, served: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff("", &normalise(committed), &normalise(served), &mut out);
    out
}

fn diff(path: &str, committed: &Value, served: &Value, out: &mut Vec<String>) {
    match (committed, served) {
        (Value::Object(committed), Value::Object(served)) => {
            let keys: BTreeSet<&String> = committed.keys().chain(served.keys()).collect();
            for key in keys {
                let path = join(path, key);
                match (committed.get(key), served.get(key)) {
                    (Some(committed), Some(served)) => diff(&path, committed, served, out),
                    (Some(_), None) => out.push(format!("{path}: missing in served")),
                    (None, _) => out.push(format!("{path}: missing in committed")),
                }
            }
        }
        // Lists of plain values (`required`, `enum`, operation tags) read best whole.
        (Value::Array(committed), Value::Array(served))
            if committed.iter().chain(served).any(is_container) =>
        {
            for index in 0..committed.len().max(served.len()) {
                let (committed, served) = (committed.get(index), served.get(index));
                let path = format!("{path}[{}]", element_label(index, committed, served));
                match (committed, served) {
                    (Some(committed), Some(served)) => diff(&path, committed, served, out),
                    (Some(_), None) => out.push(format!("{path}: missing in served")),
                    (None, _) => out.push(format!("{path}: missing in committed")),
                }
            }
        }
        _ if committed != served => out.push(format!("{path}: {committed} != {served}")),
        _ => {}
    }
}

fn is_container(value: &Value) -> bool {
    value.is_object() || value.is_array()
}

/// Names a list element by its `name` (parameters, servers) when both sides agree on it, as
/// that reads better than an index; otherwise by its index.
fn element_label(index: usize, committed: Option<&Value>, served: Option<&Value>) -> String {
    let name = |value: Option<&Value>| value?.get("name")?.as_str().map(str::to_owned);
    match (name(committed), name(served)) {
        (Some(committed), Some(served)) if committed == served => committed,
        _ => index.to_string(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// What the normalisation of one document needs to know about its component schemas.
struct Context {
    schemas: Map<String, Value>,
}

impl Context {
    fn new(root: &Map<String, Value>) -> Self {
        let schemas = root
            .get("components")
            .and_then(|components| components.get("schemas"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        Context { schemas }
    }

    /// A named component that poem-openapi cannot emit: it only names object and enum
    /// schemas, so a named string or integer (an id, a quantity) is inlined at each use.
    fn is_inlined(&self, name: &str) -> bool {
        let Some(schema) = self.schemas.get(name).and_then(Value::as_object) else {
            return false;
        };
        match schema.get("type").and_then(Value::as_str) {
            None | Some("object") => false,
            Some(_) => !schema.contains_key("enum"),
        }
    }

    fn components(&self, components: &Value) -> Value {
        map_entries(components, |kind, section| match kind {
            "schemas" => {
                let Some(schemas) = section.as_object() else {
                    return section.clone();
                };
                let mut out = Map::new();
                for (name, schema) in schemas {
                    if self.is_inlined(name) {
                        continue;
                    }
                    let mut schema = schema.clone();
                    // poem-openapi titles every object schema with its name.
                    if let Some(fields) = schema.as_object_mut()
                        && fields.get("title").and_then(Value::as_str) == Some(name)
                    {
                        fields.remove("title");
                    }
                    out.insert(name.clone(), self.schema(&schema, false));
                }
                Value::Object(out)
            }
            "parameters" => map_values(section, |parameter| self.parameter(parameter)),
            "headers" => map_values(section, |header| self.header(header)),
            "requestBodies" => map_values(section, |body| self.request_body(body)),
            "responses" => map_values(section, |response| self.response(response)),
            _ => section.clone(),
        })
    }

    fn path_item(&self, item: &Value) -> Value {
        map_entries(item, |key, value| match key {
            "summary" | "description" => trim(value),
            "parameters" => map_array(value, |parameter| self.parameter(parameter)),
            method if METHODS.contains(&method) => self.operation(value),
            _ => value.clone(),
        })
    }

    fn operation(&self, operation: &Value) -> Value {
        let Some(operation) = operation.as_object() else {
            return operation.clone();
        };
        let mut out = Map::new();
        for (key, value) in operation {
            let value = match key.as_str() {
                "deprecated" if *value == false => continue,
                "summary" | "description" => trim(value),
                "parameters" => map_array(value, |parameter| self.parameter(parameter)),
                "requestBody" => self.request_body(value),
                "responses" => map_values(value, |response| self.response(response)),
                _ => value.clone(),
            };
            out.insert(key.clone(), value);
        }
        Value::Object(out)
    }

    fn parameter(&self, parameter: &Value) -> Value {
        let Some(fields) = parameter.as_object() else {
            return parameter.clone();
        };
        let mut fields = fields.clone();
        // poem-openapi writes a parameter's example into its schema.
        if let Some(example) = fields.remove("example") {
            match fields.get_mut("schema").and_then(Value::as_object_mut) {
                Some(schema) if !schema.contains_key("example") => {
                    schema.insert("example".to_owned(), example);
                }
                _ => {
                    fields.insert("example".to_owned(), example);
                }
            }
        }
        let default_style = match fields.get("in").and_then(Value::as_str) {
            Some("query" | "cookie") => "form",
            _ => "simple",
        };
        self.parameter_like(&fields, default_style)
    }

    fn header(&self, header: &Value) -> Value {
        match header.as_object() {
            Some(fields) => self.parameter_like(fields, "simple"),
            None => header.clone(),
        }
    }

    /// The fields that parameters and headers share, with their defaults made explicit or
    /// dropped so that spelling them out or leaving them out compares equal.
    fn parameter_like(&self, fields: &Map<String, Value>, default_style: &str) -> Value {
        if fields.contains_key("$ref") {
            return Value::Object(fields.clone());
        }
        // A use site with its own description keeps it: the component's description is not
        // copied into the schema (poem-openapi puts the doc comment on the parameter).
        let described = fields.contains_key("description");
        let mut out = Map::new();
        for (key, value) in fields {
            let value = match key.as_str() {
                "deprecated" | "allowEmptyValue" | "allowReserved" if *value == false => continue,
                "description" => trim(value),
                "schema" => self.schema(value, described),
                "content" => self.content(value),
                "example" | "examples" => literal(value),
                _ => value.clone(),
            };
            out.insert(key.clone(), value);
        }
        // Written out so that a difference reads `required: false != true`.
        out.entry("required").or_insert(Value::Bool(false));

        let style = out
            .get("style")
            .and_then(Value::as_str)
            .unwrap_or(default_style)
            .to_owned();
        if style == default_style {
            out.remove("style");
        }
        // poem-openapi writes `explode: true` everywhere, also where it changes nothing.
        let matters = out
            .get("schema")
            .is_none_or(|schema| self.explode_matters(schema, &style));
        if out
            .get("explode")
            .is_some_and(|explode| !matters || *explode == (style == "form"))
        {
            out.remove("explode");
        }
        Value::Object(out)
    }

    /// Whether `explode` changes how a value of the normalised `schema` is serialised in
    /// `style`: never for a scalar, and for an array only outside the `simple` style, whose
    /// exploded and unexploded forms are both `a,b,c`.
    fn explode_matters(&self, schema: &Value, style: &str) -> bool {
        let target = match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => reference
                .strip_prefix(SCHEMA_REF_PREFIX)
                .and_then(|name| self.schemas.get(name)),
            None => Some(schema),
        };
        match target
            .and_then(|schema| schema.get("type"))
            .and_then(Value::as_str)
        {
            Some("array") => style != "simple",
            Some("object") | None => true,
            Some(_) => false,
        }
    }

    fn request_body(&self, body: &Value) -> Value {
        let mut body = map_entries(body, |key, value| match key {
            "description" => trim(value),
            "content" => self.content(value),
            _ => value.clone(),
        });
        if let Some(fields) = body.as_object_mut()
            && !fields.contains_key("$ref")
        {
            fields.entry("required").or_insert(Value::Bool(false));
        }
        body
    }

    fn response(&self, response: &Value) -> Value {
        map_entries(response, |key, value| match key {
            "description" => trim(value),
            "content" => self.content(value),
            "headers" => {
                let Some(headers) = value.as_object() else {
                    return value.clone();
                };
                // Header names are case-insensitive; poem-openapi upper-cases them.
                let headers = headers
                    .iter()
                    .map(|(name, header)| (name.to_ascii_lowercase(), self.header(header)))
                    .collect();
                Value::Object(headers)
            }
            _ => value.clone(),
        })
    }

    /// A `content` map, keyed by the media type without its parameters: poem-openapi serves
    /// JSON as `application/json; charset=utf-8`, and UTF-8 is what JSON is anyway.
    fn content(&self, content: &Value) -> Value {
        let Some(content) = content.as_object() else {
            return content.clone();
        };
        let essence = |media_type: &str| {
            let essence = media_type.split(';').next().unwrap_or_default();
            essence.trim().to_ascii_lowercase()
        };
        let mut out = Map::new();
        for (media_type, media) in content {
            let key = essence(media_type);
            // Two entries that differ only by parameters really are different: keep both.
            let unique = content.keys().filter(|other| essence(other) == key).count() == 1;
            let key = if unique { key } else { media_type.clone() };
            let media = map_entries(media, |field, value| match field {
                "schema" => self.schema(value, false),
                "example" | "examples" => literal(value),
                _ => value.clone(),
            });
            out.insert(key, media);
        }
        Value::Object(out)
    }

    /// `schema` normalised; `described` says whether its use site (a parameter or header)
    /// already carries a description.
    fn schema(&self, schema: &Value, described: bool) -> Value {
        self.schema_inlining(schema, described, &mut Vec::new())
    }

    /// `inlining` holds the components being inlined around `schema`, so that a component
    /// that contains itself is left as a reference instead of recursing for ever.
    fn schema_inlining(
        &self,
        schema: &Value,
        described: bool,
        inlining: &mut Vec<String>,
    ) -> Value {
        let Some(fields) = schema.as_object() else {
            return schema.clone();
        };
        let mut fields = collapse_single_all_of(fields);
        let inlined = fields
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|reference| reference.strip_prefix(SCHEMA_REF_PREFIX))
            .filter(|name| self.is_inlined(name) && !inlining.iter().any(|seen| seen == name))
            .map(str::to_owned);
        if let Some(name) = &inlined {
            fields = self.inline(name, fields, described);
            inlining.push(name.clone());
        }

        let mut out = Map::new();
        for (key, value) in &fields {
            let value = match key.as_str() {
                "nullable" | "readOnly" | "writeOnly" | "deprecated" | "uniqueItems"
                | "exclusiveMinimum" | "exclusiveMaximum"
                    if *value == false =>
                {
                    continue;
                }
                "additionalProperties" if *value == true => continue,
                "required" => match value.as_array() {
                    Some(names) if names.is_empty() => continue,
                    Some(names) => {
                        let mut names = names.clone();
                        names.sort_by_cached_key(Value::to_string);
                        Value::Array(names)
                    }
                    None => value.clone(),
                },
                "description" => trim(value),
                "properties" => map_values(value, |property| {
                    self.schema_inlining(property, false, inlining)
                }),
                "items" | "additionalProperties" | "not" => {
                    self.schema_inlining(value, false, inlining)
                }
                "allOf" | "oneOf" | "anyOf" => map_array(value, |schema| {
                    self.schema_inlining(schema, false, inlining)
                }),
                "example" | "default" | "enum" => literal(value),
                _ => value.clone(),
            };
            out.insert(key.clone(), value);
        }

        if inlined.is_some() {
            inlining.pop();
        }
        Value::Object(out)
    }

    /// The component `name` written out in place of the reference in `use_site`. The use
    /// site's other keywords win, as poem-openapi lets a field's attributes override its
    /// type's; its description, or its parameter's, replaces the component's.
    fn inline(
        &self,
        name: &str,
        mut use_site: Map<String, Value>,
        described: bool,
    ) -> Map<String, Value> {
        let mut fields = self.schemas[name].as_object().cloned().unwrap_or_default();
        if described {
            fields.remove("description");
        }
        use_site.remove("$ref");
        fields.extend(use_site);
        fields
    }
}

/// `{allOf: [{$ref: X}], ...siblings}` as `{$ref: X, ...siblings}`: poem-openapi wraps a
/// reference in `allOf` to give it siblings, which 3.0 ignores next to a bare `$ref`.
fn collapse_single_all_of(fields: &Map<String, Value>) -> Map<String, Value> {
    let mut fields = fields.clone();
    let reference = match fields
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        Some([only]) => only
            .as_object()
            .filter(|only| only.len() == 1)
            .and_then(|only| only.get("$ref"))
            .cloned(),
        _ => None,
    };
    if let Some(reference) = reference
        && !fields.contains_key("$ref")
    {
        fields.remove("allOf");
        fields.insert("$ref".to_owned(), reference);
    }
    fields
}

/// The top-level tags as a map from name to tag: their order carries no meaning. A list
/// with a nameless or repeated tag stays a list, so that the oddity shows.
fn tags(tags: &Value) -> Value {
    let Some(list) = tags.as_array() else {
        return tags.clone();
    };
    let mut out = Map::new();
    for tag in list {
        let Some(name) = tag.get("name").and_then(Value::as_str) else {
            return tags.clone();
        };
        let mut tag = trim_description(tag);
        if let Some(fields) = tag.as_object_mut() {
            fields.remove("name");
        }
        if out.insert(name.to_owned(), tag).is_some() {
            return tags.clone();
        }
    }
    Value::Object(out)
}

/// Example and default values with the date-times in one spelling: chrono serialises UTC
/// as `+00:00` where a hand-written example says `Z`, the same instant in RFC 3339.
fn literal(value: &Value) -> Value {
    match value {
        Value::String(text) if is_utc_date_time(text) => {
            Value::String(format!("{}+00:00", &text[..text.len() - 1]))
        }
        Value::Array(items) => items.iter().map(literal).collect(),
        Value::Object(fields) => fields
            .iter()
            .map(|(key, value)| (key.clone(), literal(value)))
            .collect(),
        _ => value.clone(),
    }
}

/// Whether `text` is an RFC 3339 date-time in UTC written with `Z`.
fn is_utc_date_time(text: &str) -> bool {
    let Some(time) = text.strip_suffix(['Z', 'z']) else {
        return false;
    };
    let (seconds, fraction) = match time.split_once('.') {
        Some((seconds, fraction)) if !fraction.is_empty() => (seconds, fraction),
        Some(_) => return false,
        None => (time, ""),
    };
    let shape = "dddd-dd-ddTdd:dd:dd";
    seconds.len() == shape.len()
        && seconds
            .bytes()
            .zip(shape.bytes())
            .all(|(char, expected)| match expected {
                b'd' => char.is_ascii_digit(),
                _ => char.eq_ignore_ascii_case(&expected),
            })
        && fraction.bytes().all(|char| char.is_ascii_digit())
}

/// Every number as the f64 it denotes, written as an integer when it is one, so that
/// `1000.0` and `1000` compare equal.
fn canonical_numbers(value: &Value) -> Value {
    match value {
        Value::Number(number) => match number.as_f64() {
            Some(float)
                if float.fract() == 0.0 && (i64::MIN as f64..i64::MAX as f64).contains(&float) =>
            {
                Value::from(float as i64)
            }
            Some(float) => Value::from(float),
            None => value.clone(),
        },
        Value::Array(items) => items.iter().map(canonical_numbers).collect(),
        Value::Object(fields) => fields
            .iter()
            .map(|(key, value)| (key.clone(), canonical_numbers(value)))
            .collect(),
        _ => value.clone(),
    }
}

fn trim(value: &Value) -> Value {
    match value.as_str() {
        Some(text) => Value::String(text.trim().to_owned()),
        None => value.clone(),
    }
}

fn trim_description(value: &Value) -> Value {
    map_entries(value, |key, value| match key {
        "description" => trim(value),
        _ => value.clone(),
    })
}

/// `value` with `f` applied to each entry of an object; anything else unchanged.
fn map_entries(value: &Value, mut f: impl FnMut(&str, &Value) -> Value) -> Value {
    match value.as_object() {
        Some(fields) => fields
            .iter()
            .map(|(key, value)| (key.clone(), f(key, value)))
            .collect(),
        None => value.clone(),
    }
}

fn map_values(value: &Value, mut f: impl FnMut(&Value) -> Value) -> Value {
    map_entries(value, |_, value| f(value))
}

fn map_array(value: &Value, f: impl FnMut(&Value) -> Value) -> Value {
    match value.as_array() {
        Some(items) => items.iter().map(f).collect(),
        None => value.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{differences, normalise};

    /// A small spec in the hand-written style: a named primitive (`BookId`, `Quantity`), an
    /// enum, an object, parameter examples, a response header.
    fn committed() -> Value {
        json!({
            "openapi": "3.0.0",
            "info": { "title": "Shop", "version": "1.0.0", "description": "Sells books.\n" },
            "servers": [{ "url": "http://localhost:8080", "description": "Local" }],
            "tags": [
                { "name": "orders", "description": "Orders." },
                { "name": "health", "description": "Health." }
            ],
            "paths": {
                "/orders": {
                    "post": {
                        "tags": ["orders"],
                        "operationId": "create_order",
                        "summary": "Place an order",
                        "parameters": [
                            {
                                "name": "Idempotency-Key",
                                "in": "header",
                                "required": false,
                                "description": "Makes retries safe.",
                                "schema": { "type": "string", "maxLength": 128 },
                                "example": "key-1"
                            },
                            {
                                "name": "dryRun",
                                "in": "query",
                                "schema": { "type": "boolean" }
                            }
                        ],
                        "requestBody": {
                            "required": true,
                            "content": {
                                "application/json": {
                                    "schema": { "$ref": "#/components/schemas/Order" }
                                }
                            }
                        },
                        "responses": {
                            "201": {
                                "description": "Recorded.",
                                "headers": {
                                    "Location": {
                                        "description": "Path of the order.",
                                        "required": true,
                                        "schema": { "type": "string" }
                                    }
                                },
                                "content": {
                                    "application/json": {
                                        "schema": { "$ref": "#/components/schemas/Order" }
                                    }
                                }
                            },
                            "409": { "description": "Out of stock." }
                        }
                    }
                },
                "/books/{id}": {
                    "get": {
                        "tags": ["orders"],
                        "operationId": "get_book",
                        "parameters": [{
                            "name": "id",
                            "in": "path",
                            "required": true,
                            "description": "Id of the book.",
                            "schema": { "$ref": "#/components/schemas/BookId" },
                            "example": "book-1"
                        }],
                        "responses": { "204": { "description": "Exists." } }
                    }
                }
            },
            "components": {
                "schemas": {
                    "BookId": {
                        "description": "Id of a book.",
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 64
                    },
                    "Quantity": {
                        "description": "Number of copies.",
                        "type": "integer",
                        "format": "int32",
                        "minimum": 1,
                        "maximum": 1000
                    },
                    "Status": {
                        "type": "string",
                        "enum": ["pending", "confirmed"]
                    },
                    "Order": {
                        "description": "An order.",
                        "type": "object",
                        "required": ["bookId", "quantity", "status"],
                        "properties": {
                            "bookId": { "$ref": "#/components/schemas/BookId" },
                            "quantity": { "$ref": "#/components/schemas/Quantity" },
                            "status": { "$ref": "#/components/schemas/Status" },
                            "createdAt": { "type": "string", "format": "date-time" }
                        },
                        "example": {
                            "bookId": "book-1",
                            "quantity": 2,
                            "status": "pending",
                            "createdAt": "2026-11-24T10:15:30Z"
                        }
                    }
                }
            }
        })
    }

    /// `committed()` written by hand the way poem-openapi 5.1 serves it: every difference
    /// is one `normalise` must erase.
    fn cosmetic_twin() -> Value {
        json!({
            "openapi": "3.0.0",
            "info": { "title": "Shop", "description": "Sells books.", "version": "1.0.0" },
            "servers": [{ "url": "http://localhost:8080", "description": "Local" }],
            "tags": [
                { "name": "health", "description": "Health." },
                { "name": "orders", "description": "Orders." }
            ],
            "paths": {
                "/orders": {
                    "post": {
                        "tags": ["orders"],
                        "summary": "Place an order",
                        "parameters": [
                            {
                                "name": "Idempotency-Key",
                                "schema": { "type": "string", "example": "key-1", "maxLength": 128 },
                                "in": "header",
                                "description": "Makes retries safe.",
                                "required": false,
                                "deprecated": false,
                                "explode": true
                            },
                            {
                                "name": "dryRun",
                                "schema": { "type": "boolean" },
                                "in": "query",
                                "required": false,
                                "deprecated": false,
                                "explode": true
                            }
                        ],
                        "requestBody": {
                            "content": {
                                "application/json; charset=utf-8": {
                                    "schema": { "$ref": "#/components/schemas/Order" }
                                }
                            },
                            "required": true
                        },
                        "responses": {
                            "201": {
                                "description": "Recorded.",
                                "content": {
                                    "application/json; charset=utf-8": {
                                        "schema": { "$ref": "#/components/schemas/Order" }
                                    }
                                },
                                "headers": {
                                    "LOCATION": {
                                        "description": "Path of the order.",
                                        "required": true,
                                        "deprecated": false,
                                        "schema": { "type": "string" }
                                    }
                                }
                            },
                            "409": { "description": "Out of stock." }
                        },
                        "operationId": "create_order"
                    }
                },
                "/books/{id}": {
                    "get": {
                        "tags": ["orders"],
                        "parameters": [{
                            "name": "id",
                            "schema": {
                                "type": "string",
                                "example": "book-1",
                                "maxLength": 64,
                                "minLength": 1
                            },
                            "in": "path",
                            "description": "Id of the book.",
                            "required": true,
                            "deprecated": false,
                            "explode": true
                        }],
                        "responses": { "204": { "description": "Exists." } },
                        "operationId": "get_book"
                    }
                }
            },
            "components": {
                "schemas": {
                    "Order": {
                        "type": "object",
                        "title": "Order",
                        "description": "An order.",
                        "required": ["bookId", "status", "quantity"],
                        "properties": {
                            "bookId": {
                                "type": "string",
                                "description": "Id of a book.",
                                "maxLength": 64,
                                "minLength": 1
                            },
                            "quantity": {
                                "type": "integer",
                                "format": "int32",
                                "description": "Number of copies.",
                                "maximum": 1000.0,
                                "minimum": 1.0
                            },
                            "status": {
                                "allOf": [{ "$ref": "#/components/schemas/Status" }]
                            },
                            "createdAt": { "type": "string", "format": "date-time" }
                        },
                        "example": {
                            "bookId": "book-1",
                            "createdAt": "2026-11-24T10:15:30+00:00",
                            "quantity": 2,
                            "status": "pending"
                        }
                    },
                    "Status": {
                        "type": "string",
                        "enum": ["pending", "confirmed"]
                    }
                }
            }
        })
    }

    /// `doc` with the value at the JSON pointer `at` replaced by `value`.
    fn with(mut doc: Value, at: &str, value: Value) -> Value {
        *doc.pointer_mut(at).expect("the pointer names a value") = value;
        doc
    }

    /// `doc` without the entry at the JSON pointer `at`.
    fn without(mut doc: Value, at: &str) -> Value {
        let (parent, key) = at.rsplit_once('/').expect("the pointer has a parent");
        let parent = doc.pointer_mut(parent).expect("the pointer names a value");
        let removed = match parent {
            Value::Object(fields) => fields.remove(key),
            Value::Array(items) => Some(items.remove(key.parse().expect("an index"))),
            _ => None,
        };
        assert!(removed.is_some(), "{at} names nothing to remove");
        doc
    }

    #[test]
    fn a_document_has_no_differences_with_itself() {
        assert_eq!(
            differences(&committed(), &committed()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_committed_specs_have_no_differences_with_themselves() {
        let dir = format!("{}/openapi", env!("CARGO_MANIFEST_DIR"));
        let specs = std::fs::read_dir(&dir).expect("openapi/ is readable");
        let specs: Vec<_> = specs
            .map(|entry| entry.expect("openapi/ is readable").path())
            .filter(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "yaml")
            })
            .collect();
        assert!(!specs.is_empty(), "no spec in {dir}");
        for path in specs {
            let text = std::fs::read_to_string(&path).expect("the spec is readable");
            let spec: Value = serde_yaml::from_str(&text).expect("the spec is valid YAML");
            assert_eq!(
                differences(&spec, &spec),
                Vec::<String>::new(),
                "{}",
                path.display()
            );
        }
    }

    #[test]
    fn a_document_has_no_differences_with_its_cosmetic_twin() {
        assert_eq!(
            differences(&committed(), &cosmetic_twin()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn normalising_twice_changes_nothing_more() {
        let once = normalise(&committed());
        assert_eq!(normalise(&once), once);
    }

    #[test]
    fn normalising_inlines_named_primitives_and_keeps_objects_and_enums_named() {
        let schemas = normalise(&committed())["components"]["schemas"].clone();
        let mut names: Vec<&String> = schemas.as_object().unwrap().keys().collect();
        names.sort();
        assert_eq!(names, ["Order", "Status"]);
        assert_eq!(
            schemas["Order"]["properties"]["bookId"],
            json!({ "description": "Id of a book.", "type": "string", "minLength": 1, "maxLength": 64 })
        );
        assert_eq!(
            schemas["Order"]["properties"]["status"],
            json!({ "$ref": "#/components/schemas/Status" })
        );
    }

    #[test]
    fn a_different_maximum_is_a_difference() {
        let served = with(
            cosmetic_twin(),
            "/components/schemas/Order/properties/quantity/maximum",
            json!(100),
        );
        assert_eq!(
            differences(&committed(), &served),
            ["components.schemas.Order.properties.quantity.maximum: 1000 != 100"]
        );
    }

    #[test]
    fn a_change_to_a_named_primitive_shows_at_each_use() {
        let committed = with(
            committed(),
            "/components/schemas/BookId/maxLength",
            json!(32),
        );
        assert_eq!(
            differences(&committed, &cosmetic_twin()),
            [
                "components.schemas.Order.properties.bookId.maxLength: 32 != 64",
                "paths./books/{id}.get.parameters[id].schema.maxLength: 32 != 64",
            ]
        );
    }

    #[test]
    fn a_field_that_is_no_longer_required_is_a_difference() {
        let served = without(cosmetic_twin(), "/components/schemas/Order/required/1");
        assert_eq!(
            differences(&committed(), &served),
            [
                r#"components.schemas.Order.required: ["bookId","quantity","status"] != ["bookId","quantity"]"#
            ]
        );
    }

    #[test]
    fn a_missing_status_code_is_a_difference() {
        let served = without(cosmetic_twin(), "/paths/~1orders/post/responses/409");
        assert_eq!(
            differences(&committed(), &served),
            ["paths./orders.post.responses.409: missing in served"]
        );
    }

    #[test]
    fn a_missing_enum_value_is_a_difference() {
        let served = without(cosmetic_twin(), "/components/schemas/Status/enum/1");
        assert_eq!(
            differences(&committed(), &served),
            [r#"components.schemas.Status.enum: ["pending","confirmed"] != ["pending"]"#]
        );
    }

    #[test]
    fn enum_values_in_another_order_are_a_difference() {
        let served = with(
            cosmetic_twin(),
            "/components/schemas/Status/enum",
            json!(["confirmed", "pending"]),
        );
        assert_eq!(differences(&committed(), &served).len(), 1);
    }

    #[test]
    fn a_parameter_that_becomes_required_is_a_difference() {
        let served = with(
            cosmetic_twin(),
            "/paths/~1orders/post/parameters/1/required",
            json!(true),
        );
        assert_eq!(
            differences(&committed(), &served),
            ["paths./orders.post.parameters[dryRun].required: false != true"]
        );
    }

    #[test]
    fn an_explode_that_changes_the_serialisation_is_a_difference() {
        let list = json!({ "type": "array", "items": { "type": "string" } });
        let schema = "/paths/~1orders/post/parameters/1/schema";
        let committed = with(committed(), schema, list.clone());
        let served = with(cosmetic_twin(), schema, list);
        assert_eq!(differences(&committed, &served), Vec::<String>::new());

        let served = with(
            served,
            "/paths/~1orders/post/parameters/1/explode",
            json!(false),
        );
        assert_eq!(
            differences(&committed, &served),
            ["paths./orders.post.parameters[dryRun].explode: missing in committed"]
        );
    }

    #[test]
    fn parameters_in_another_order_are_a_difference() {
        let mut served = cosmetic_twin();
        let parameters = served
            .pointer_mut("/paths/~1orders/post/parameters")
            .and_then(Value::as_array_mut)
            .unwrap();
        parameters.reverse();
        assert!(!differences(&committed(), &served).is_empty());
    }

    #[test]
    fn a_different_header_or_description_is_a_difference() {
        let served = without(
            cosmetic_twin(),
            "/paths/~1orders/post/responses/201/headers/LOCATION",
        );
        let served = with(
            served,
            "/paths/~1orders/post/responses/409/description",
            json!("No stock."),
        );
        assert_eq!(
            differences(&committed(), &served),
            [
                "paths./orders.post.responses.201.headers.location: missing in served",
                r#"paths./orders.post.responses.409.description: "Out of stock." != "No stock.""#,
            ]
        );
    }

    #[test]
    fn a_title_other_than_the_schema_name_is_a_difference() {
        let served = with(
            cosmetic_twin(),
            "/components/schemas/Order/title",
            json!("Purchase"),
        );
        assert_eq!(
            differences(&committed(), &served),
            ["components.schemas.Order.title: missing in committed"]
        );
    }

    #[test]
    fn a_different_openapi_version_is_a_difference() {
        let served = with(cosmetic_twin(), "/openapi", json!("3.0.3"));
        assert_eq!(differences(&committed(), &served).len(), 1);
    }

    #[test]
    fn a_different_example_is_a_difference() {
        let served = with(
            cosmetic_twin(),
            "/components/schemas/Order/example/createdAt",
            json!("2026-11-24T11:15:30+01:00"),
        );
        assert_eq!(differences(&committed(), &served).len(), 1);
    }
}
