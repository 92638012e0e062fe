//! What drift finds between two versions of a spec, judged by the rules of the `breaking`
//! module header and named by the identifiers a changelog line acknowledges.

use std::{cmp::Ordering, collections::HashSet};

use drift::{ChangeClass, ChangeComparison, ChangeDetails, ChangeInfo, ChangePath};
use serde_json::Value;

use super::Change;

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The bounds of a request input and their values when absent: a change of one towards the
/// other side of `narrower` refuses values that were valid.
const BOUNDS: &[(&str, f64, Ordering)] = &[
    ("maxLength", f64::INFINITY, Ordering::Less),
    ("maximum", f64::INFINITY, Ordering::Less),
    ("maxItems", f64::INFINITY, Ordering::Less),
    ("minLength", 0.0, Ordering::Greater),
    ("minimum", f64::NEG_INFINITY, Ordering::Greater),
    ("minItems", 0.0, Ordering::Greater),
];

/// Stands in for a value a pointer does not reach.
static NULL: Value = Value::Null;

/// The breaking changes from `old` to `new` of the spec named `spec`, sorted by identifier.
pub(super) fn compare(spec: &str, old: &Value, new: &Value) -> Result<Vec<Change>, String> {
    let (mut old, mut new) = (old.clone(), new.clone());
    inline_operation_parts(&mut old);
    inline_operation_parts(&mut new);
    keep_common_media_types(&mut old, &mut new);
    let found = drift::compare(&old, &new)
        .map_err(|err| format!("cannot compare {spec} with its baseline: {err:#}"))?;
    let mut judge = Judge {
        spec,
        old: &old,
        new: &new,
        changes: Vec::new(),
    };
    for change in &found {
        for info in &change.changes {
            for path in &change.paths {
                judge.change(path, info);
            }
        }
    }
    judge.compositions();
    judge.security();
    let mut changes = judge.changes;
    changes.sort_by(|a, b| a.id.cmp(&b.id));
    changes.dedup_by(|a, b| a.id == b.id);
    Ok(changes)
}

/// `doc` with the parameters, request bodies and responses its operations take from
/// `components` written out in place: drift then reports what changes in them under the
/// operation, which is how a report names them.
fn inline_operation_parts(doc: &mut Value) {
    let source = doc.clone();
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let mut parts: Vec<&mut Value> = Vec::new();
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for (key, value) in item {
            match (key.as_str(), value) {
                // Shared by every operation of the path.
                ("parameters", Value::Array(params)) => parts.extend(params),
                (_, Value::Object(op)) => {
                    for (key, value) in op {
                        match (key.as_str(), value) {
                            ("parameters", Value::Array(params)) => parts.extend(params),
                            ("requestBody", body) => parts.push(body),
                            ("responses", Value::Object(responses)) => {
                                parts.extend(responses.values_mut());
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for part in parts {
        // A bound rather than cycle detection: a longer chain of bare `$ref`s is a cycle.
        for _ in 0..16 {
            let Some(reference) = part.get("$ref").and_then(Value::as_str) else {
                break;
            };
            *part = node(&source, reference).clone();
        }
    }
}

/// Leaves, for each body that both documents describe, only the media types that both give a
/// schema for. drift 0.2 stops with a panic when the media types of a body differ between the
/// versions, and this check's rules do not cover media types: a schema is compared with the
/// schema of the same media type, and one without a counterpart is new or gone.
fn keep_common_media_types(old: &mut Value, new: &mut Value) {
    let mut pointers = content_pointers(old);
    pointers.extend(content_pointers(new));
    for pointer in pointers {
        let with_schema = |doc: &Value| -> HashSet<String> {
            entries(doc.pointer(&pointer).unwrap_or(&NULL))
                .filter(|(_, media)| !media["schema"].is_null())
                .map(|(name, _)| name.clone())
                .collect()
        };
        let common: HashSet<String> = with_schema(old)
            .intersection(&with_schema(new))
            .cloned()
            .collect();
        for doc in [&mut *old, &mut *new] {
            if let Some(Value::Object(content)) = doc.pointer_mut(&pointer) {
                content.retain(|name, _| common.contains(name));
            }
        }
    }
}

/// Where the operations of `doc` describe bodies: their requests and responses.
fn content_pointers(doc: &Value) -> HashSet<String> {
    let mut pointers = HashSet::new();
    for (path, item) in entries(&doc["paths"]) {
        for &method in METHODS {
            let op = format!("/paths/{}/{method}", escape(path));
            pointers.insert(format!("{op}/requestBody/content"));
            for (status, _) in entries(&item[method]["responses"]) {
                pointers.insert(format!("{op}/responses/{}/content", escape(status)));
            }
        }
    }
    pointers
}

/// Which side of the exchange a schema describes: the rules differ.
#[derive(Clone, Copy)]
enum Dir {
    Request,
    Response,
}

impl Dir {
    fn name(self) -> &'static str {
        match self {
            Dir::Request => "request",
            Dir::Response => "response",
        }
    }
}

/// Turns what drift reports into this project's breaking changes.
///
/// drift classifies the changes of operations, parameters and request bodies itself; a change
/// inside a schema (a bound, an enum, a pattern, a format, the properties or `required` of an
/// object) it reports as unhandled, with where it is and on which side. The rules of the module
/// header judge those, one schema at a time.
struct Judge<'a> {
    spec: &'a str,
    old: &'a Value,
    new: &'a Value,
    changes: Vec<Change>,
}

impl Judge<'_> {
    fn report(&mut self, what: String, why: impl Into<String>) {
        self.changes.push(Change {
            id: format!("{}: {what}", self.spec),
            why: why.into(),
        });
    }

    /// One change drift found, reached by `path`.
    fn change(&mut self, path: &ChangePath, info: &ChangeInfo) {
        if info.class == ChangeClass::Trivial {
            return;
        }
        let (old_base, _) = path.old.base_and_subpath();
        let (new_base, _) = path.new.base_and_subpath();
        let old_at = join(old_base, &info.old_subpath);
        let new_at = join(new_base, &info.new_subpath);
        let new_node = node(self.new, &new_at);

        match (path.comparison, info.details) {
            (ChangeComparison::Structural, ChangeDetails::Removed) => {
                let op = operation_name(&old_at);
                self.report(
                    format!("removed operation {op}"),
                    "clients that call it fail",
                );
            }
            (ChangeComparison::Input, ChangeDetails::AddedRequired | ChangeDetails::MoreStrict) => {
                let op = operation_name(path.new.endpoint_base().unwrap_or_default());
                let param = new_node
                    .get("in")
                    .is_some()
                    .then(|| parameter_label(new_node, &op));
                let (what, why) = match (param, info.details) {
                    (Some(label), ChangeDetails::AddedRequired) => (
                        format!("new required {label}"),
                        "requests of existing clients lack it and are refused",
                    ),
                    (Some(label), _) => (
                        format!("now required {label}"),
                        "requests of existing clients that leave it out are refused",
                    ),
                    (None, ChangeDetails::AddedRequired) => (
                        format!("new required request body of {op}"),
                        "requests of existing clients have no body and are refused",
                    ),
                    (None, _) => (
                        format!("now required request body of {op}"),
                        "requests of existing clients without a body are refused",
                    ),
                };
                self.report(what, why);
            }
            (
                ChangeComparison::Input | ChangeComparison::Output,
                ChangeDetails::Datatype | ChangeDetails::UnknownDifference,
            ) => {
                // A composition as a whole: `compositions` judges it.
                if ["/allOf", "/anyOf", "/oneOf"]
                    .iter()
                    .any(|end| new_at.ends_with(end))
                {
                    return;
                }
                let Some((dir, label)) = self.schema_place(path, &new_at) else {
                    return;
                };
                let old_node = node(self.old, &old_at);
                self.schema(dir, old_node, new_node, &label);
            }
            // By the rules of the module header none of the rest breaks a client: a new
            // operation, a removed or new optional parameter, a body no longer required, added
            // or removed response statuses (drift counts a new status as breaking).
            _ => {}
        }
    }

    /// The side and the name in reports of the schema at `new_at` (drift's pointer in the new
    /// document), reached by `path`; `None` when `new_at` is not in a schema, such as a
    /// parameter that changed from `schema` to `content`.
    fn schema_place(&self, path: &ChangePath, new_at: &str) -> Option<(Dir, String)> {
        let (base, subpath) = split_schema(new_at)?;
        let dir = match base.strip_prefix("#/components/schemas/") {
            // A named schema is reported under its name, once, whichever operation uses it.
            Some(_) if path.comparison == ChangeComparison::Input => Dir::Request,
            Some(_) => Dir::Response,
            None => side_of(base)?,
        };
        Some((
            dir,
            format!("{}{}", place_label(self.new, base), suffix(subpath)),
        ))
    }

    /// drift 0.2 compares an `allOf` or `anyOf` of several schemas only as a whole, by value:
    /// a difference is unhandled, and a member that is a `$ref` is not followed, so a change
    /// inside the schema it names goes unseen; so does a change inside a `oneOf` whose number
    /// of members changed. Such a composition is reported when anything in it differs, its
    /// references followed. The rules of the module header are not applied inside it: whoever
    /// changes it judges whether clients break, and acknowledges it.
    fn compositions(&mut self) {
        let mut found = Vec::new();
        compositions_in(self.new, "#", &mut found);
        for (at, keyword) in found {
            let old = &node(self.old, &at)[keyword];
            let new = &node(self.new, &at)[keyword];
            let (Some(before), Some(after)) = (old.as_array(), new.as_array()) else {
                continue;
            };
            // What drift compares member by member: a `oneOf` of as many members as before,
            // and single members, which stand for the schema they wrap.
            if before.len() == after.len() && (keyword == "oneOf" || after.len() == 1) {
                continue;
            }
            if expand(self.old, old, 0) != expand(self.new, new, 0) {
                let label = match split_schema(&at) {
                    Some((base, subpath)) => {
                        format!("{}{}", place_label(self.new, base), suffix(subpath))
                    }
                    None => at.clone(),
                };
                self.report(
                    format!("changed {keyword} of {label}"),
                    "its members are not compared rule by rule: judge whether clients break",
                );
            }
        }
    }

    /// drift 0.2 does not compare security. An operation of both versions that needs a token
    /// where it did not, or a scope in `x-required-scopes` that it did not list, refuses the
    /// requests of existing clients, which send no token or one without that scope.
    /// Operations are paired by method and path as written.
    fn security(&mut self) {
        for (path, item) in entries(&self.new["paths"]) {
            for &method in METHODS {
                let (old, new) = (&self.old["paths"][path][method], &item[method]);
                if old.is_null() || new.is_null() || !needs_token(self.new, new) {
                    continue;
                }
                let op = format!("{} {path}", method.to_uppercase());
                let scopes: Vec<&Value> = elements(&new["x-required-scopes"]).collect();
                if !needs_token(self.old, old) {
                    let needed = match &scopes[..] {
                        [] => String::new(),
                        scopes => {
                            let names: Vec<String> = scopes.iter().map(|s| show(s)).collect();
                            format!(" (it needs one with {})", names.join(" and "))
                        }
                    };
                    self.report(
                        format!("new security requirement of {op}"),
                        format!(
                            "existing clients send no token{needed}: their requests are refused"
                        ),
                    );
                    continue;
                }
                let before: Vec<&Value> = elements(&old["x-required-scopes"]).collect();
                for scope in scopes.into_iter().filter(|scope| !before.contains(scope)) {
                    self.report(
                        format!("new required scope {} of {op}", show(scope)),
                        "requests of existing clients whose token lacks it are refused",
                    );
                }
            }
        }
    }

    /// Compares one schema in both versions by the rules of `dir`; what it contains drift
    /// reports on its own.
    fn schema(&mut self, dir: Dir, old: &Value, new: &Value, label: &str) {
        let side = dir.name();
        for key in ["type", "format"] {
            if old[key] != new[key] {
                self.report(
                    format!("changed {key} in {side} {label}"),
                    format!("was {}, now {}", show(&old[key]), show(&new[key])),
                );
            }
        }
        match dir {
            Dir::Request => self.request_rules(old, new, label),
            Dir::Response => self.response_rules(old, new, label),
        }
    }

    /// What the server accepts must not shrink: existing clients send what was valid before.
    fn request_rules(&mut self, old: &Value, new: &Value, label: &str) {
        for &(key, absent, narrower) in BOUNDS {
            let before = old[key].as_f64().unwrap_or(absent);
            let after = new[key].as_f64().unwrap_or(absent);
            if after.partial_cmp(&before) == Some(narrower) {
                self.report(
                    format!("narrowed {key} in request {label}"),
                    format!(
                        "was {}, now {}: values existing clients send may be refused",
                        show(&old[key]),
                        show(&new[key])
                    ),
                );
            }
        }

        match (old["enum"].as_array(), new["enum"].as_array()) {
            (Some(before), Some(after)) => {
                for value in before.iter().filter(|value| !after.contains(value)) {
                    self.report(
                        format!("removed enum value {} in request {label}", show(value)),
                        "requests that send it are refused",
                    );
                }
            }
            (None, Some(_)) => self.report(
                format!("new enum in request {label}"),
                "requests that send another value are refused",
            ),
            _ => {}
        }

        if !new["pattern"].is_null() && old["pattern"] != new["pattern"] {
            self.report(
                format!("changed pattern in request {label}"),
                format!(
                    "was {}, now {}: values existing clients send may not match",
                    show(&old["pattern"]),
                    show(&new["pattern"])
                ),
            );
        }

        let before: Vec<&Value> = elements(&old["required"]).collect();
        for field in elements(&new["required"]).filter(|field| !before.contains(field)) {
            self.report(
                format!("new required request field {label}.{}", show(field)),
                "requests of existing clients that leave it out are refused",
            );
        }
    }

    /// What the server answers must not lose anything clients read, nor say anything new
    /// where clients expect a closed set.
    fn response_rules(&mut self, old: &Value, new: &Value, label: &str) {
        for (field, _) in entries(&old["properties"]) {
            if new["properties"].get(field).is_none() {
                self.report(
                    format!("removed response field {label}.{field}"),
                    "clients that read it no longer get it",
                );
            }
        }

        if let (Some(before), Some(after)) = (old["enum"].as_array(), new["enum"].as_array()) {
            for value in after.iter().filter(|value| !before.contains(value)) {
                self.report(
                    format!("added enum value {} in response {label}", show(value)),
                    "clients that match the values exhaustively cannot read it",
                );
            }
        }
    }
}

/// `base` and drift's `subpath` below it as one JSON pointer (`#/...`).
fn join(base: &str, subpath: &str) -> String {
    match subpath {
        "" => base.to_owned(),
        _ => format!("{base}/{subpath}"),
    }
}

/// The value at drift's pointer `at`; null when there is none. drift names an operation's
/// request body `request_body` in its pointers, where documents say `requestBody`.
fn node<'v>(doc: &'v Value, at: &str) -> &'v Value {
    let pointer = at.strip_prefix('#').unwrap_or(at);
    doc.pointer(pointer)
        .or_else(|| doc.pointer(&pointer.replacen("/request_body/", "/requestBody/", 1)))
        .unwrap_or(&NULL)
}

/// `at` split where a schema starts: the schema of a parameter or body, or a named schema.
/// The second part leads from there to the changed schema.
fn split_schema(at: &str) -> Option<(&str, &str)> {
    const NAMED: &str = "#/components/schemas/";
    if let Some(rest) = at.strip_prefix(NAMED) {
        let end = NAMED.len() + rest.find('/').unwrap_or(rest.len());
        return Some((&at[..end], at[end..].trim_start_matches('/')));
    }
    let start = at.find("/schema")?;
    let rest = &at[start + "/schema".len()..];
    (rest.is_empty() || rest.starts_with('/')).then(|| (&at[..start], rest.trim_start_matches('/')))
}

/// Which side a pointer into an operation is on: its parameters and body, or its responses.
fn side_of(at: &str) -> Option<Dir> {
    if at.contains("/responses/") {
        Some(Dir::Response)
    } else if ["/parameters/", "/request_body", "/requestBody"]
        .iter()
        .any(|part| at.contains(part))
    {
        Some(Dir::Request)
    } else {
        None
    }
}

/// A path from a schema down to one it contains, as reports write it: `.field`, `[]` for the
/// items of an array, `.*` for the values of a map. The members of `allOf`, `oneOf` and `anyOf`
/// go by the name of the schema that combines them.
fn suffix(subpath: &str) -> String {
    let mut out = String::new();
    let mut segments = subpath.split('/').filter(|segment| !segment.is_empty());
    while let Some(segment) = segments.next() {
        match segment {
            "properties" => {
                if let Some(field) = segments.next() {
                    out += &format!(".{}", unescape(field));
                }
            }
            "items" => out += "[]",
            "additionalProperties" => out += ".*",
            "allOf" | "oneOf" | "anyOf" => {
                segments.next();
            }
            _ => {}
        }
    }
    out
}

/// The name in reports of what holds a schema at `holder`, in `op`: a parameter, the request
/// body or the body of a response.
fn holder_label(doc: &Value, holder: &str, op: &str) -> String {
    let holder_node = node(doc, holder);
    if holder_node.get("in").is_some() {
        parameter_label(holder_node, op)
    } else if let Some(status) = holder.split("/responses/").nth(1) {
        let status = status.split('/').next().unwrap_or_default();
        format!("{op} {} body", unescape(status))
    } else {
        format!("{op} body")
    }
}

/// The name in reports of the schema that starts at `base` (see `split_schema`): a named
/// schema by its name, one in an operation by what holds it, anything else by its pointer.
fn place_label(doc: &Value, base: &str) -> String {
    if let Some(name) = base.strip_prefix("#/components/schemas/") {
        unescape(name)
    } else if base.starts_with("#/paths/") {
        holder_label(doc, base, &operation_name(base))
    } else {
        base.to_owned()
    }
}

/// Where `value` (at the pointer `at`) and what it contains have an `allOf`, `anyOf` or
/// `oneOf`, with the keyword.
fn compositions_in(value: &Value, at: &str, found: &mut Vec<(String, &'static str)>) {
    let Value::Object(map) = value else {
        return;
    };
    for keyword in ["allOf", "anyOf", "oneOf"] {
        if map.get(keyword).is_some_and(Value::is_array) {
            found.push((at.to_owned(), keyword));
        }
    }
    for (key, inner) in map {
        match inner {
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    compositions_in(item, &format!("{at}/{}/{index}", escape(key)), found);
                }
            }
            _ => compositions_in(inner, &format!("{at}/{}", escape(key)), found),
        }
    }
}

/// How many `$ref`s deep `expand` follows: recursive schemas would never end.
const EXPAND_DEPTH: usize = 8;

/// `value` with the `$ref`s in it replaced by what they point to in `doc`.
fn expand(doc: &Value, value: &Value, depth: usize) -> Value {
    match value {
        Value::Object(map) => match map.get("$ref").and_then(Value::as_str) {
            Some(reference) if depth < EXPAND_DEPTH => expand(doc, node(doc, reference), depth + 1),
            _ => Value::Object(
                map.iter()
                    .map(|(key, inner)| (key.clone(), expand(doc, inner, depth)))
                    .collect(),
            ),
        },
        Value::Array(items) => {
            Value::Array(items.iter().map(|item| expand(doc, item, depth)).collect())
        }
        other => other.clone(),
    }
}

/// Whether `op` of `doc` needs a token: its own `security`, or else the document's, lists a
/// requirement and none that is empty (an empty one lets a request without a token through).
fn needs_token(doc: &Value, op: &Value) -> bool {
    let security = op.get("security").unwrap_or(&doc["security"]);
    let mut requirements = elements(security).peekable();
    requirements.peek().is_some()
        && requirements.all(|requirement| entries(requirement).next().is_some())
}

/// `GET /orders/{id}` for drift's pointer to an operation (`#/paths/~1orders~1{id}/get`).
fn operation_name(at: &str) -> String {
    let rest = at.strip_prefix("#/paths/").unwrap_or(at);
    let mut segments = rest.split('/');
    let path = unescape(segments.next().unwrap_or_default());
    match segments.next() {
        Some(method) => format!("{} {path}", method.to_uppercase()),
        // A parameter shared by every operation of a path.
        None => path,
    }
}

/// `query parameter limit of GET /orders`.
fn parameter_label(param: &Value, op: &str) -> String {
    let place = param["in"].as_str().unwrap_or_default();
    let name = param["name"].as_str().unwrap_or_default();
    format!("{place} parameter {name} of {op}")
}

/// A key as a JSON pointer segment.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// The members of an object, none when it is not one.
fn entries(value: &Value) -> impl Iterator<Item = (&String, &Value)> {
    value.as_object().into_iter().flatten()
}

/// The elements of an array, none when it is not one.
fn elements(value: &Value) -> impl Iterator<Item = &Value> {
    value.as_array().into_iter().flatten()
}

/// A value as a report shows it: strings bare, absence as `none`.
fn show(value: &Value) -> String {
    match value {
        Value::Null => "none".to_owned(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}
