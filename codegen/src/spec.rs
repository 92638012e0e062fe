//! Reading a spec, and the problems found in it: each names the construct by its JSON
//! pointer, so that every one can be found and fixed from the build's output alone.

use std::{fmt, fs, path::Path};

use openapiv3::OpenAPI;

/// A construct of a spec that the generator does not support, or a spec it cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the spec, as a JSON pointer (`#` for the document as a whole).
    pub pointer: String,
    pub message: String,
}

impl Problem {
    /// A problem at `pointer`; a message of several lines (a regex's syntax error) is put on
    /// one, so that each problem is one line of the build's output.
    pub(crate) fn new(pointer: &str, message: impl Into<String>) -> Self {
        let message: String = message.into();
        let lines: Vec<&str> = message
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect();
        Self {
            pointer: pointer.to_owned(),
            message: lines.join(" "),
        }
    }
}

/// Every problem found in one spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errors {
    pub spec: String,
    pub problems: Vec<Problem>,
}

/// One line per problem: `<spec path>: <JSON pointer>: <message>`.
impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}: {}", self.spec, problem.pointer, problem.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

/// The OpenAPI 3.0 document at `path`.
pub(crate) fn read(path: &Path) -> Result<OpenAPI, Problem> {
    let text =
        fs::read_to_string(path).map_err(|err| Problem::new("#", format!("cannot read: {err}")))?;
    let spec: OpenAPI = serde_yaml::from_str(&text)
        .map_err(|err| Problem::new("#", format!("not an OpenAPI 3.0 document: {err}")))?;
    if !spec.openapi.starts_with("3.0.") {
        return Err(Problem::new(
            "#/openapi",
            format!("version {} is not 3.0.x", spec.openapi),
        ));
    }
    Ok(spec)
}

/// Escapes one segment of a JSON pointer (RFC 6901).
pub(crate) fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_segments_escape_tilde_before_slash() {
        assert_eq!(escape_pointer("/orders/{id}"), "~1orders~1{id}");
        assert_eq!(escape_pointer("a~/b"), "a~0~1b");
    }

    #[test]
    fn a_message_of_several_lines_becomes_one() {
        let problem = Problem::new("#", "regex parse error:\n    [a-\n    ^\nerror: unclosed");
        assert_eq!(problem.message, "regex parse error: [a- ^ error: unclosed");
    }

    #[test]
    fn errors_print_one_line_per_problem() {
        let errors = Errors {
            spec: "openapi/x.yaml".to_owned(),
            problems: vec![
                Problem::new("#/tags", "one"),
                Problem::new("#/paths", "two"),
            ],
        };
        assert_eq!(
            errors.to_string(),
            "openapi/x.yaml: #/tags: one\nopenapi/x.yaml: #/paths: two"
        );
    }
}
