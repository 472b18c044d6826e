//! [`JobError`]: what is wrong with a job file, and where.

use std::fmt;

/// A place in the job file: 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// 1-based line.
    pub line: u64,
    /// 1-based column, counted in characters.
    pub column: u64,
}

impl Position {
    /// A position from its line and column.
    pub fn new(line: u64, column: u64) -> Position {
        Position { line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobErrorKind {
    /// The file could not be read.
    Read {
        /// The I/O error's text.
        reason: String,
    },
    /// The file is not text: a byte that is not UTF-8, or a character YAML
    /// does not allow (such as NUL), at the error's position.
    NotText {
        /// What was found, such as `byte 0xFF` or `character U+0000`.
        found: String,
    },
    /// A second YAML document starts at the error's position.
    MultipleDocuments,
    /// The text is not valid YAML (or hits a parser limit).
    Syntax {
        /// The parser's message.
        message: String,
    },
    /// A key appears twice in one mapping.
    DuplicateKey,
    /// A key is not known in its section.
    UnknownKey {
        /// The key as written.
        name: String,
        /// The section (`job`, `range`, `input`, …).
        section: String,
        /// The closest known key, if one is close.
        suggestion: Option<String>,
    },
    /// A required key is absent.
    MissingKey {
        /// The missing key.
        name: &'static str,
        /// The section it is missing from.
        section: String,
    },
    /// A value has the wrong YAML type.
    WrongType {
        /// What was expected (`a string`, `a non-negative integer`, …).
        expected: &'static str,
        /// What was found (`a string`, `a list`, …).
        found: &'static str,
    },
    /// Two keys of which at most one may be given.
    Conflict {
        /// The key given first.
        first: String,
        /// Where the first key is.
        first_at: Position,
        /// The group the two belong to, as `` `a`, `b` or `c` ``.
        group: &'static str,
    },
    /// None of a group of keys of which one is required.
    MissingOneOf {
        /// What the group decides (`what to run`).
        purpose: &'static str,
        /// The group, as `` `a`, `b` or `c` ``.
        group: &'static str,
    },
    /// `op:` names an op this build does not have.
    UnknownOp {
        /// The name given.
        name: String,
        /// The closest known op, if one is close.
        suggestion: Option<String>,
    },
    /// A value of the right type that is not allowed.
    InvalidValue {
        /// Why, as a sentence fragment following the key.
        message: String,
    },
}

/// An error in a job file: the file, the line and column, the key it
/// concerns and what is wrong. Its `Display` is one line such as
/// `` job.yaml:7:3: unknown key `retires` in job; did you mean `retries`? ``;
/// [`JobError::render`] adds the offending source line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobError {
    /// The file name, as given to the parser.
    pub file: String,
    /// Where the problem is; `None` only when the file could not be read.
    pub position: Option<Position>,
    /// The dotted path of the key concerned, such as `retries`,
    /// `range.step`, `grid.lr[2]` or `command[1]`; empty for the whole
    /// document.
    pub key: String,
    /// What is wrong (boxed to keep `Result<_, JobError>` small).
    pub kind: Box<JobErrorKind>,
    /// The source line at `position`, for [`JobError::render`].
    pub(crate) line_text: Option<String>,
}

impl JobError {
    /// The error followed by the source line it points at and a caret under
    /// the column, for terminals.
    pub fn render(&self) -> String {
        let mut out = self.to_string();
        if let (Some(position), Some(text)) = (self.position, &self.line_text) {
            let number = position.line.to_string();
            let pad = " ".repeat(number.len());
            let indent: String = text
                .chars()
                .take(position.column.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("\n{pad} |\n{number} | {text}\n{pad} | {indent}^"));
        }
        out
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(position) => write!(f, "{}:{}: ", self.file, position)?,
            None => write!(f, "{}: ", self.file)?,
        }
        let key = &self.key;
        match self.kind.as_ref() {
            JobErrorKind::Read { reason } => write!(f, "cannot read the job file: {reason}"),
            JobErrorKind::NotText { found } => write!(
                f,
                "not a text file: {found} cannot appear in YAML (is this a binary file?)"
            ),
            JobErrorKind::MultipleDocuments => write!(
                f,
                "a second YAML document starts here; a job file holds one job (remove this `---` \
                 line, or give each job a file of its own)"
            ),
            JobErrorKind::Syntax { message } => write!(f, "invalid YAML: {message}"),
            JobErrorKind::DuplicateKey => {
                write!(f, "duplicate key `{key}`: each key may appear once")
            }
            JobErrorKind::UnknownKey {
                name,
                section,
                suggestion,
            } => {
                write!(f, "unknown key `{name}` in {section}")?;
                if let Some(suggestion) = suggestion {
                    write!(f, "; did you mean `{suggestion}`?")?;
                }
                Ok(())
            }
            JobErrorKind::MissingKey { name, section } => {
                write!(f, "missing key `{name}` in {section}")
            }
            JobErrorKind::WrongType { expected, found } => {
                if key.is_empty() {
                    write!(f, "the job file must be {expected}, found {found}")
                } else {
                    write!(f, "`{key}` must be {expected}, found {found}")
                }
            }
            JobErrorKind::Conflict {
                first,
                first_at,
                group,
            } => write!(
                f,
                "`{key}` cannot be combined with `{first}` (line {}): a job has exactly one of \
                 {group}",
                first_at.line
            ),
            JobErrorKind::MissingOneOf { purpose, group } => {
                write!(f, "the job does not say {purpose}: add one of {group}")
            }
            JobErrorKind::UnknownOp { name, suggestion } => {
                write!(
                    f,
                    "no built-in op named `{name}` (built-in ops arrive in a later release"
                )?;
                if let Some(suggestion) = suggestion {
                    write!(f, "; did you mean `{suggestion}`?")?;
                }
                write!(f, ")")
            }
            JobErrorKind::InvalidValue { message } => write!(f, "`{key}` {message}"),
        }
    }
}

impl std::error::Error for JobError {}

/// The closest of `candidates` to `given`, if it is close enough to be a
/// plausible typo (a case difference, or an edit distance of about a third
/// of the word).
pub(crate) fn suggest<'a>(
    given: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let given_lower = given.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let distance = if candidate.to_lowercase() == given_lower {
            0
        } else {
            strsim::damerau_levenshtein(&given_lower, &candidate.to_lowercase())
        };
        let limit = (candidate.chars().count().max(given.chars().count()) / 3).max(1);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let keys = ["name", "retries", "timeout", "range", "resources"];
        assert_eq!(suggest("retires", keys).as_deref(), Some("retries"));
        assert_eq!(suggest("Timeout", keys).as_deref(), Some("timeout"));
        assert_eq!(suggest("rnage", keys).as_deref(), Some("range"));
        assert_eq!(suggest("resource", keys).as_deref(), Some("resources"));
        assert_eq!(suggest("colour", keys), None);
        assert_eq!(suggest("x", keys), None);
    }

    #[test]
    fn render_shows_the_line_and_a_caret() {
        let error = JobError {
            file: "job.yaml".into(),
            position: Some(Position::new(12, 3)),
            key: "range.stpe".into(),
            kind: Box::new(JobErrorKind::UnknownKey {
                name: "stpe".into(),
                section: "range".into(),
                suggestion: Some("step".into()),
            }),
            line_text: Some("  stpe: 2".into()),
        };
        assert_eq!(
            error.render(),
            "job.yaml:12:3: unknown key `stpe` in range; did you mean `step`?\n   |\n12 |   \
             stpe: 2\n   |   ^"
        );
    }
}
