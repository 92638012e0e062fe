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
//! The two versions are compared by the `drift` crate: it pairs operations (by method and path,
//! whatever the path parameters are named), parameters and bodies, follows `$ref`s, and walks
//! schemas through `properties`, `items`, `additionalProperties` and `oneOf` members (by
//! position), on the request side and on the response side. What it finds is judged by this
//! project's rules (the `judge` module), and named by an identifier.
//!
//! Breaking, because a client written against the old spec can fail:
//! - a removed operation;
//! - a removed property of a schema reachable from a response body;
//! - a new required request input: a property added to `required` of a schema reachable from a
//!   request body, a new required parameter, an optional parameter made required, a required
//!   request body where there was none or an optional one;
//! - a narrowed request input (body or parameter): a lower `maxLength`/`maximum`/`maxItems`, a
//!   higher `minLength`/`minimum`/`minItems` (a bound where there was none counts), a removed
//!   enum value or an enum where there was none, a new or changed `pattern`;
//! - a changed `type` or `format`, in a request or in a response: generated clients' types
//!   follow them;
//! - an added enum value in a response: clients that match the values exhaustively break;
//! - any change inside an `allOf` or `anyOf` of several schemas, or a `oneOf` whose number of
//!   members changed: drift does not compare their members (see `Judge::compositions`), so
//!   the change is reported for whoever makes it to judge;
//! - an operation that needs a token where it did not (a `security` of its own, or the
//!   top-level one it inherits), or a scope in its `x-required-scopes` that it did not list:
//!   drift does not compare security, `Judge::security` does.
//!
//! Not breaking: new operations, optional inputs and response fields, removed parameters and
//! request fields (the server ignores what it no longer reads), added or removed response
//! status codes (drift counts a new one as breaking; this project's rules do not), a removed
//! enum value in a response, widened or response-side constraints, descriptions and examples,
//! a removed security requirement or scope.
//!
//! Not looked at: headers of responses, media types (a schema is compared with the one of the
//! same media type), `nullable`, exclusive bounds.
//!
//! Acknowledging: a change passes when `openapi/CHANGELOG.md` has a line that is exactly its
//! identifier (`order-processor.yaml: removed operation GET /orders/{id}`), optionally as a `-`
//! or `*` bullet or in backticks, under any heading.

mod judge;

use std::{
    collections::HashSet,
    fs,
    path::Path,
    process::{Command, Output},
};

use serde_json::Value;

use crate::specs::SPECS;
use judge::compare;

const CHANGELOG: &str = "openapi/CHANGELOG.md";

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
                changes.extend(compare(name, &old, &current)?);
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

#[cfg(test)]
mod tests;
