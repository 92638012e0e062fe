//! Checks the deployment files: the Dockerfile with hadolint, and the Kubernetes manifests
//! under `k8s/` with kubernetes-validate (offline, against the schemas the package bundles),
//! after making sure every path a `kustomization.yaml` names exists and every manifest is
//! named by one. Where `kubectl` is installed, each kustomization is also rendered and the
//! result validated, which catches what kustomize itself does to the files.
//!
//! There is no Docker engine or cluster here: nothing is built or applied.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{python, step};

/// The Kubernetes versions the manifests must be valid for. 1.30 is the oldest: the preStop
/// `sleep` action (the image has no shell for `exec: sleep`) is on by default from 1.30. 1.37
/// is the newest schema kubernetes-validate 1.37.0 bundles.
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.37.0"];

/// The names kustomize looks for in a directory.
const KUSTOMIZATION_FILES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

pub fn check(root: &Path) -> Result<(), String> {
    let bin = python::venv(root)?;
    step::run(
        "hadolint Dockerfile (fails on warnings and errors)",
        Command::new(bin.join("hadolint"))
            .args(["--failure-threshold", "warning", "Dockerfile"])
            .current_dir(root),
    )?;

    let k8s = root.join("k8s");
    let mut manifests = Vec::new();
    let mut kustomizations = Vec::new();
    collect_yaml(&k8s, &mut manifests, &mut kustomizations)?;
    if kustomizations.is_empty() {
        return Err(format!("no kustomization.yaml under {}", k8s.display()));
    }

    step::timed(
        "kustomizations: every entry exists, every manifest is listed",
        || {
            print!("{}", list(root, &kustomizations));
            check_kustomizations(root, &kustomizations, &manifests)
        },
    )?;

    // Paths relative to the root keep kubernetes-validate's messages short.
    let mut to_validate: Vec<PathBuf> = manifests.iter().map(|m| relative(root, m)).collect();
    to_validate.extend(render(root, &kustomizations)?);
    let mut command = Command::new(bin.join("kubernetes-validate"));
    command.args(["--strict", "--quiet"]);
    for version in KUBERNETES_VERSIONS {
        command.args(["--kubernetes-version", version]);
    }
    command.args(&to_validate).current_dir(root);
    run_silent(
        &format!(
            "kubernetes-validate --strict, Kubernetes {}",
            KUBERNETES_VERSIONS.join(" and ")
        ),
        &list(root, &to_validate),
        &mut command,
    )
}

/// Every `*.yaml`/`*.yml` below `dir`, split into Kubernetes manifests and kustomizations.
fn collect_yaml(
    dir: &Path,
    manifests: &mut Vec<PathBuf>,
    kustomizations: &mut Vec<PathBuf>,
) -> Result<(), String> {
    let entries =
        fs::read_dir(dir).map_err(|err| format!("cannot read {}: {err}", dir.display()))?;
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()
        .map_err(|err| format!("cannot read {}: {err}", dir.display()))?;
    paths.sort();
    for path in paths {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            collect_yaml(&path, manifests, kustomizations)?;
        } else if KUSTOMIZATION_FILES.contains(&name) {
            kustomizations.push(path);
        } else if path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml"))
        {
            manifests.push(path);
        }
    }
    Ok(())
}

/// Every path each kustomization names exists (a directory being another kustomization), and
/// every manifest under `k8s/` is named by some kustomization, so none is validated here but
/// never deployed.
fn check_kustomizations(
    root: &Path,
    kustomizations: &[PathBuf],
    manifests: &[PathBuf],
) -> Result<(), String> {
    let mut problems = Vec::new();
    let mut named = BTreeSet::new();
    for kustomization in kustomizations {
        let shown = relative(root, kustomization);
        let text = fs::read_to_string(kustomization)
            .map_err(|err| format!("cannot read {}: {err}", kustomization.display()))?;
        let dir = kustomization.parent().unwrap_or(root);
        let entries = match kustomization_paths(&text) {
            Ok(entries) => entries,
            Err(err) => {
                problems.push(format!("{}: {err}", shown.display()));
                continue;
            }
        };
        for (line, key, entry) in entries {
            let target = dir.join(&entry);
            let found = if target.is_dir() {
                KUSTOMIZATION_FILES.iter().any(|f| target.join(f).is_file())
            } else {
                target.is_file()
            };
            if !found {
                let what = if target.is_dir() {
                    "is a directory without a kustomization.yaml"
                } else {
                    "does not exist"
                };
                problems.push(format!(
                    "{}:{line}: {key} entry `{entry}` {what}",
                    shown.display()
                ));
            } else if let Ok(canonical) = target.canonicalize() {
                named.insert(canonical);
            }
        }
    }
    // Unread kustomizations would make every file they list look unlisted.
    let all_read = problems.is_empty();
    for manifest in manifests.iter().filter(|_| all_read) {
        let canonical = manifest.canonicalize().unwrap_or_else(|_| manifest.clone());
        if !named.contains(&canonical) {
            problems.push(format!(
                "{} is not listed in any kustomization.yaml",
                relative(root, manifest).display()
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// The file paths of a kustomization: the items of its `resources`, `components` and
/// `patchesStrategicMerge` lists, and the `path` of each `patches` item, each with its line
/// number and list. A small reader for the block style these files are written in: a list in
/// flow style (`resources: [a, b]`) is refused rather than skipped.
fn kustomization_paths(text: &str) -> Result<Vec<(usize, &'static str, String)>, String> {
    const PATH_LISTS: &[&str] = &["resources", "components", "patchesStrategicMerge"];
    let mut entries = Vec::new();
    let mut current: Option<&'static str> = None;
    // The indentation of the current list's `- ` items, and of the keys of the current
    // `patches` item: deeper lines belong to values (an inline JSON patch is itself a list,
    // with `path:` fields of its own).
    let mut item_indent = None;
    let mut keys_indent = 0;
    for (index, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        if line.trim().is_empty() || line.trim() == "---" {
            continue;
        }
        let number = index + 1;
        // A top-level key starts at column 0; a list item may too (`- x` under its key).
        if !line.starts_with([' ', '\t', '-']) {
            current = None;
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let key = key.trim();
            let list = PATH_LISTS
                .iter()
                .chain(&["patches"])
                .find(|name| **name == key)
                .copied();
            if let Some(list) = list {
                if !value.trim().is_empty() {
                    return Err(format!(
                        "line {number}: write `{list}:` as a block list, one `- item` a line"
                    ));
                }
                current = Some(list);
                item_indent = None;
            }
            continue;
        }
        let Some(list) = current else { continue };
        let item = line.trim_start();
        let indent = line.len() - item.len();
        let new_item = match item.strip_prefix('-') {
            Some(rest) if *item_indent.get_or_insert(indent) == indent => Some(rest),
            _ => None,
        };
        if list == "patches" {
            // `- path: x`, or `path: x` among the item's keys; inline patches have no path.
            let field = match new_item {
                Some(rest) => {
                    let key = rest.trim_start();
                    keys_indent = line.len() - key.len();
                    key
                }
                None if indent == keys_indent => item,
                None => continue,
            };
            if let Some(path) = field.strip_prefix("path:") {
                entries.push((number, list, unquote(path)));
            }
        } else if let Some(path) = new_item {
            let path = unquote(path);
            if path.is_empty() || path.contains(": ") || path.ends_with(':') {
                return Err(format!(
                    "line {number}: `{list}` items must be paths, found `{}`",
                    item.trim()
                ));
            }
            entries.push((number, list, path));
        }
    }
    Ok(entries)
}

/// The line without a trailing `# comment` (a `#` at the start or after a space).
fn strip_comment(line: &str) -> &str {
    if line.trim_start().starts_with('#') {
        return "";
    }
    match line.find(" #") {
        Some(at) => &line[..at],
        None => line,
    }
}

fn unquote(value: &str) -> String {
    let value = value.trim();
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(value)
        .to_owned()
}

/// Renders each kustomization with `kubectl kustomize` into `target/xtask-k8s/`, when kubectl
/// is installed, and returns the rendered files (relative to the root).
fn render(root: &Path, kustomizations: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    if Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_err()
    {
        println!("==> kubectl kustomize: skipped, kubectl is not installed");
        return Ok(Vec::new());
    }
    let out_dir = crate::services::target_dir(root).join("xtask-k8s");
    fs::create_dir_all(&out_dir)
        .map_err(|err| format!("cannot create {}: {err}", out_dir.display()))?;
    let mut rendered = Vec::new();
    for kustomization in kustomizations {
        // A kustomize Component only renders as part of a kustomization that uses it.
        let text = fs::read_to_string(kustomization)
            .map_err(|err| format!("cannot read {}: {err}", kustomization.display()))?;
        if text
            .lines()
            .any(|line| line.trim_end() == "kind: Component")
        {
            continue;
        }
        let dir = relative(root, kustomization.parent().unwrap_or(root));
        let name = dir.to_string_lossy().replace(['/', '\\'], "-");
        let output = relative(root, &out_dir.join(format!("{name}.yaml")));
        step::run(
            &format!("kubectl kustomize {} > {}", dir.display(), output.display()),
            Command::new("kubectl")
                .arg("kustomize")
                .arg(&dir)
                .arg("--output")
                .arg(&output)
                .current_dir(root),
        )?;
        rendered.push(output);
    }
    Ok(rendered)
}

/// Like `step::run`, but also fails when the command prints anything on stdout: with
/// `--quiet`, kubernetes-validate prints only problems, and it exits 0 after a `WARN` for a
/// kind or apiVersion it has no schema for (a typo in `kind:` would pass unnoticed).
fn run_silent(name: &str, details: &str, command: &mut Command) -> Result<(), String> {
    step::timed(name, || {
        print!("{details}");
        let output = command
            .output()
            .map_err(|err| format!("cannot run {}: {err}", command.get_program().display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        print!("{stdout}");
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        if !output.status.success() {
            Err(format!("{}", output.status))
        } else if !stdout.trim().is_empty() {
            Err("reported problems".to_owned())
        } else {
            Ok(())
        }
    })
}

fn relative(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

/// One indented line per path.
fn list(root: &Path, paths: &[PathBuf]) -> String {
    paths.iter().fold(String::new(), |mut out, path| {
        out.push_str("    ");
        out.push_str(&relative(root, path).to_string_lossy());
        out.push('\n');
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_block_lists_patches_and_comments() {
        let text = "\
# a comment
apiVersion: kustomize.config.k8s.io/v1beta1
resources:
  - a.yaml # trailing
  # - commented.yaml
  - ../../base
  - \"quoted.yaml\"
labels:
  - pairs:
      x: y
patches:
  - target:
      kind: Deployment
    path: patch.yaml
  - patch: |-
      - op: replace
        path: /spec/replicas
        value: 3
    target:
      path: not-a-file
components:
- ../components/c
";
        let paths: Vec<(&str, String)> = kustomization_paths(text)
            .unwrap()
            .into_iter()
            .map(|(_, list, path)| (list, path))
            .collect();
        assert_eq!(
            paths,
            [
                ("resources", "a.yaml".to_owned()),
                ("resources", "../../base".to_owned()),
                ("resources", "quoted.yaml".to_owned()),
                ("patches", "patch.yaml".to_owned()),
                ("components", "../components/c".to_owned()),
            ]
        );
    }

    #[test]
    fn refuses_flow_lists() {
        let err = kustomization_paths("resources: [a.yaml, b.yaml]\n").unwrap_err();
        assert!(err.contains("block list"), "{err}");
    }
}
