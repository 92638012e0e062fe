//! Breaking-change check of the OpenAPI specs: compares each spec in the working tree with its
//! baseline and fails on a breaking change that `openapi/CHANGELOG.md` does not acknowledge.
//!
//! The baseline of a spec is
//! - the newest release tag (`git describe --tags --abbrev=0 --match 'v*'`) when there is one,
//!   so everything since the last release is judged together;
//! - otherwise the newest committed version of the spec whose content differs from the working
//!   tree: `HEAD`'s when the spec has uncommitted changes, else the one before the commit that
//!   last changed it. Content is the parsed YAML, so a commit that only touched comments or
//!   layout does not hide the change before it.
//!
//! A spec that did not exist at its baseline is new: nothing in it can break a client.
//!
//! Breaking, because a client written against the old spec can fail:
//! - a removed operation (path and method);
//! - a removed property of a schema reachable from a response body;
//! - a new required request input: a property added to `required` of a schema reachable from a
//!   request body, a new required parameter, an optional parameter made required;
//! - a narrowed request input (body or parameter): a lower `maxLength`/`maximum`/`maxItems`, a
//!   higher `minLength`/`minimum`/`minItems` (a bound where there was none counts), a removed
//!   enum value or an enum where there was none, a new or changed `pattern`;
//! - a changed `type` or `format`, in a request or in a response: generated clients' types
//!   follow them;
//! - an added enum value in a response: clients that match the values exhaustively break.
//!
//! Not breaking: new operations, optional inputs and response fields, added or removed response
//! status codes, a removed enum value in a response, widened or response-side constraints,
//! descriptions and examples.
//!
//! Schemas are followed through `$ref`s inside the document, `properties`, `items` and
//! `allOf`/`oneOf`/`anyOf` (matched by position). Not looked at: headers of responses, media
//! types, `nullable`, `additionalProperties`, exclusive bounds, a request body made required.
//!
//! Acknowledging: a change passes when `openapi/CHANGELOG.md` has a line that is exactly its
//! identifier (`order-processor.yaml: removed operation GET /orders/{id}`), optionally as a `-`
//! or `*` bullet or in backticks, under any heading.

use std::{
    cmp::Ordering,
    collections::{BTreeMap, HashSet},
    fs,
    path::Path,
    process::{Command, Output},
    ptr,
};

use serde_json::Value;

use crate::specs::SPECS;

const CHANGELOG: &str = "openapi/CHANGELOG.md";

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

/// Stands in for whatever a `$ref` that does not resolve points to.
static NULL: Value = Value::Null;

/// One breaking change: the identifier a changelog line acknowledges, and why it breaks.
struct Change {
    id: String,
    why: String,
}

/// Compares every spec with its baseline (see the module header) and fails when a breaking
/// change is not acknowledged in `openapi/CHANGELOG.md`.
pub fn check(root: &Path) -> Result<(), String> {
    let tag = release_tag(root)?;
    let mut changes = Vec::new();
    for spec in SPECS {
        let text = fs::read_to_string(root.join(spec))
            .map_err(|err| format!("cannot read {spec}: {err}"))?;
        let current = parse(spec, &text)?;
        let baseline = match &tag {
            Some(tag) => {
                version_at(root, tag, spec)?.map(|old| (format!("release tag {tag}"), old))
            }
            None => previous_version(root, spec, &current)?,
        };
        match baseline {
            Some((what, old)) => {
                println!("==> breaking changes: {spec} (working tree) against {what}");
                let name = spec.rsplit('/').next().unwrap_or(spec);
                changes.extend(compare(name, &old, &current));
            }
            None => println!(
                "==> breaking changes: {spec} has no earlier version{}, nothing to compare",
                tag.as_ref()
                    .map_or(String::new(), |tag| format!(" at {tag}"))
            ),
        }
    }
    if changes.is_empty() {
        println!("==> breaking changes: none");
        return Ok(());
    }

    // A missing changelog acknowledges nothing; the failure below says where to create it.
    let changelog = fs::read_to_string(root.join(CHANGELOG)).unwrap_or_default();
    let open = unacknowledged(&changes, &changelog);
    for change in changes
        .iter()
        .filter(|change| !open.contains(&change.id.as_str()))
    {
        println!("    acknowledged: {}", change.id);
    }
    if open.is_empty() {
        let count = changes.len();
        println!("==> breaking changes: {count}, all acknowledged in {CHANGELOG}");
        return Ok(());
    }
    let mut message = format!("{} not acknowledged in {CHANGELOG}:\n", plural(open.len()));
    for change in changes
        .iter()
        .filter(|change| open.contains(&change.id.as_str()))
    {
        message += &format!("  {}\n      {}\n", change.id, change.why);
    }
    message += &format!(
        "If they are intended, add these lines under the heading of the next version in \
         {CHANGELOG}, with what clients have to do:\n"
    );
    for id in &open {
        message += &format!("- {id}\n");
    }
    Err(message.trim_end().to_owned())
}

fn plural(count: usize) -> String {
    match count {
        1 => "1 breaking change".to_owned(),
        _ => format!("{count} breaking changes"),
    }
}

/// The identifiers of `changes` that no line of `changelog` acknowledges.
fn unacknowledged<'c>(changes: &'c [Change], changelog: &str) -> Vec<&'c str> {
    let lines: HashSet<&str> = changelog
        .lines()
        .map(|line| {
            let line = line.trim();
            let line = line
                .strip_prefix("- ")
                .or_else(|| line.strip_prefix("* "))
                .unwrap_or(line);
            line.trim().trim_matches('`')
        })
        .collect();
    changes
        .iter()
        .map(|change| change.id.as_str())
        .filter(|id| !lines.contains(id))
        .collect()
}

// --- Finding the baseline ---

fn git(root: &Path, args: &[&str]) -> Result<Output, String> {
    Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .map_err(|err| format!("cannot run git {}: {err}", args.join(" ")))
}

/// The newest release tag reachable from `HEAD`, if any.
fn release_tag(root: &Path) -> Result<Option<String>, String> {
    let out = git(root, &["describe", "--tags", "--abbrev=0", "--match", "v*"])?;
    // `git describe` fails when no tag matches: no release yet, not an error. Outside a
    // repository it fails too, and `git log` below then says so.
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}

/// The newest committed version of `spec` whose content differs from `current`, with a
/// description of where it is from; `None` when no such version exists (the spec is new).
fn previous_version(
    root: &Path,
    spec: &str,
    current: &Value,
) -> Result<Option<(String, Value)>, String> {
    let out = git(root, &["log", "--format=%h", "HEAD", "--", spec])?;
    if !out.status.success() {
        return Err(format!(
            "git log -- {spec} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // Newest first; each listed commit changed the spec, so its version is the one it made.
    for commit in String::from_utf8_lossy(&out.stdout).lines() {
        let old = version_at(root, commit, spec)?;
        if old.as_ref() != Some(current) {
            // A commit that deleted the spec leaves `None`: what came after it is new.
            return Ok(old.map(|old| {
                let what = format!("commit {commit}, the newest committed version that differs");
                (what, old)
            }));
        }
    }
    Ok(None)
}

/// The spec as of `rev`, parsed; `None` when it does not exist there.
fn version_at(root: &Path, rev: &str, spec: &str) -> Result<Option<Value>, String> {
    // `./` makes the path relative to `root`, even if the repository starts above it.
    let out = git(root, &["show", &format!("{rev}:./{spec}")])?;
    // `rev` comes from git itself, so a failure means the file is not in that commit.
    if !out.status.success() {
        return Ok(None);
    }
    parse(
        &format!("{spec} at {rev}"),
        &String::from_utf8_lossy(&out.stdout),
    )
    .map(Some)
}

fn parse(what: &str, text: &str) -> Result<Value, String> {
    serde_yaml::from_str(text).map_err(|err| format!("cannot parse {what}: {err}"))
}

// --- Comparing two versions of a spec ---

/// The breaking changes from `old` to `new` of the spec named `spec`, sorted by identifier.
fn compare(spec: &str, old: &Value, new: &Value) -> Vec<Change> {
    let mut diff = Diff {
        spec,
        old,
        new,
        visited: HashSet::new(),
        changes: Vec::new(),
    };
    for (path, old_item) in entries(&old["paths"]) {
        let new_item = &new["paths"][path];
        for &method in METHODS {
            let Some(old_op) = old_item.get(method) else {
                continue;
            };
            let op = format!("{} {path}", method.to_uppercase());
            match new_item.get(method) {
                None => diff.report(
                    format!("removed operation {op}"),
                    "clients that call it fail",
                ),
                Some(new_op) => diff.operation(&op, (old_item, old_op), (new_item, new_op)),
            }
        }
    }
    let mut changes = diff.changes;
    changes.sort_by(|a, b| a.id.cmp(&b.id));
    changes.dedup_by(|a, b| a.id == b.id);
    changes
}

/// Which side of the exchange a schema describes: the rules differ.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
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

struct Diff<'a> {
    spec: &'a str,
    old: &'a Value,
    new: &'a Value,
    /// Schema pairs already compared, by address in the two documents: comparing a pair again
    /// finds the same changes, and recursive schemas would never end.
    visited: HashSet<(Dir, *const Value, *const Value)>,
    changes: Vec<Change>,
}

impl<'a> Diff<'a> {
    fn report(&mut self, what: String, why: impl Into<String>) {
        self.changes.push(Change {
            id: format!("{}: {what}", self.spec),
            why: why.into(),
        });
    }

    /// An operation in both versions: its parameters, request body and responses.
    fn operation(&mut self, op: &str, old: (&'a Value, &'a Value), new: (&'a Value, &'a Value)) {
        let old_params = parameters(self.old, old.0, old.1);
        for ((place, name), new_param) in parameters(self.new, new.0, new.1) {
            let label = format!("{place} parameter {name} of {op}");
            let required = new_param["required"] == true;
            match old_params.get(&(place, name)) {
                None if required => self.report(
                    format!("new required {label}"),
                    "requests of existing clients lack it and are refused",
                ),
                None => {}
                Some(old_param) => {
                    if required && old_param["required"] != true {
                        self.report(
                            format!("now required {label}"),
                            "requests of existing clients that leave it out are refused",
                        );
                    }
                    self.schema(
                        Dir::Request,
                        &old_param["schema"],
                        &new_param["schema"],
                        label,
                    );
                }
            }
        }

        let old_body = resolve(self.old, &old.1["requestBody"]).0;
        let new_body = resolve(self.new, &new.1["requestBody"]).0;
        for (media, new_media) in entries(&new_body["content"]) {
            let old_schema = &old_body["content"][media]["schema"];
            let label = format!("{op} body");
            self.schema(Dir::Request, old_schema, &new_media["schema"], label);
        }

        // Only statuses in both versions: a removed or added status code is not breaking.
        for (status, new_response) in entries(&new.1["responses"]) {
            let old_response = resolve(self.old, &old.1["responses"][status]).0;
            let new_response = resolve(self.new, new_response).0;
            for (media, new_media) in entries(&new_response["content"]) {
                let old_schema = &old_response["content"][media]["schema"];
                let label = format!("{op} {status} body");
                self.schema(Dir::Response, old_schema, &new_media["schema"], label);
            }
        }
    }

    /// Compares a schema in both versions by the rules of `dir`, then what it contains.
    /// `label` names it in reports, unless it is a `$ref`: then it is named after its target,
    /// so a schema reached from many places is reported once, under its own name.
    fn schema(&mut self, dir: Dir, old: &'a Value, new: &'a Value, label: String) {
        let old = resolve(self.old, old).0;
        let (new, name) = resolve(self.new, new);
        let label = name.map_or(label, str::to_owned);
        // A schema on one side only is new or gone: the rules about its parent cover it.
        if old.is_null()
            || new.is_null()
            || !self
                .visited
                .insert((dir, ptr::from_ref(old), ptr::from_ref(new)))
        {
            return;
        }
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
            Dir::Request => self.request_rules(old, new, &label),
            Dir::Response => self.response_rules(old, new, &label),
        }

        for (field, new_field) in entries(&new["properties"]) {
            let label = format!("{label}.{field}");
            self.schema(dir, &old["properties"][field], new_field, label);
        }
        self.schema(dir, &old["items"], &new["items"], format!("{label}[]"));
        for key in ["allOf", "oneOf", "anyOf"] {
            for (old_part, new_part) in elements(&old[key]).zip(elements(&new[key])) {
                self.schema(dir, old_part, new_part, label.clone());
            }
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

/// The parameters of an operation by location and name; the operation's own override those of
/// its path, as in OpenAPI.
fn parameters<'v>(
    doc: &'v Value,
    item: &'v Value,
    op: &'v Value,
) -> BTreeMap<(&'v str, &'v str), &'v Value> {
    elements(&item["parameters"])
        .chain(elements(&op["parameters"]))
        .map(|param| {
            let param = resolve(doc, param).0;
            let place = param["in"].as_str().unwrap_or_default();
            ((place, param["name"].as_str().unwrap_or_default()), param)
        })
        .collect()
}

/// Follows `$ref`s inside `doc`; also returns the last segment of the last one (`Order` for
/// `#/components/schemas/Order`), which names the target in reports.
fn resolve<'v>(doc: &'v Value, mut value: &'v Value) -> (&'v Value, Option<&'v str>) {
    let mut name = None;
    // A bound rather than cycle detection: a longer chain of bare `$ref`s is a cycle.
    for _ in 0..16 {
        let Some(reference) = value["$ref"].as_str() else {
            break;
        };
        name = reference.rsplit('/').next();
        value = reference
            .strip_prefix('#')
            .and_then(|pointer| doc.pointer(pointer))
            .unwrap_or(&NULL);
    }
    (value, name)
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

#[cfg(test)]
mod tests;
