//! Argument templates: parsing `{placeholder}` syntax and rendering it for
//! one task.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use thiserror::Error;

/// Every placeholder name, as shown in error messages.
pub const KNOWN_PLACEHOLDERS: &str =
    "{input}, {inputs.NAME}, {params.KEY}, {output_dir}, {task_id}, {task_key}";

/// One `{…}` placeholder of an argument template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placeholder {
    /// `{input}`: the staged local path of the task's own input.
    Input,
    /// `{inputs.NAME}`: the staged local path of the broadcast input `NAME`.
    NamedInput(String),
    /// `{params.KEY}`: the task parameter `KEY` (strings verbatim, other
    /// values as JSON).
    Param(String),
    /// `{output_dir}`: the directory whose files become the task's outputs.
    OutputDir,
    /// `{task_id}`: the task id, such as `t42`.
    TaskId,
    /// `{task_key}`: the task's deterministic key.
    TaskKey,
}

impl Placeholder {
    fn parse(name: &str) -> Option<Placeholder> {
        match name {
            "input" => Some(Placeholder::Input),
            "output_dir" => Some(Placeholder::OutputDir),
            "task_id" => Some(Placeholder::TaskId),
            "task_key" => Some(Placeholder::TaskKey),
            _ => {
                if let Some(input) = name.strip_prefix("inputs.") {
                    (!input.is_empty()).then(|| Placeholder::NamedInput(input.to_owned()))
                } else if let Some(key) = name.strip_prefix("params.") {
                    (!key.is_empty()).then(|| Placeholder::Param(key.to_owned()))
                } else {
                    None
                }
            }
        }
    }
}

/// One piece of a parsed argument.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Placeholder(Placeholder),
}

/// One argv element with its placeholders parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgTemplate {
    pieces: Vec<Piece>,
}

/// A template that does not parse, or cannot be rendered for a task.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum TemplateError {
    /// The command has no program.
    #[error("the command is empty: give at least the program to run")]
    EmptyArgv,
    /// A `{…}` names nothing known.
    #[error(
        "unknown placeholder `{{{name}}}` in argument `{argument}`; known placeholders are \
         {KNOWN_PLACEHOLDERS} (write `{{{{` and `}}}}` for literal braces)"
    )]
    UnknownPlaceholder {
        /// The text between the braces.
        name: String,
        /// The whole argument.
        argument: String,
    },
    /// A `{` without its `}`.
    #[error("unclosed `{{` in argument `{argument}` (write `{{{{` for a literal brace)")]
    UnclosedBrace {
        /// The whole argument.
        argument: String,
    },
    /// A `}` that closes nothing.
    #[error("unmatched `}}` in argument `{argument}` (write `}}}}` for a literal brace)")]
    UnmatchedBrace {
        /// The whole argument.
        argument: String,
    },
    /// `{input}` was used but the task has no input of its own.
    #[error("argument `{argument}` uses `{{input}}` but this task has no input")]
    NoInput {
        /// The whole argument.
        argument: String,
    },
    /// `{inputs.NAME}` names no broadcast input of the job.
    #[error(
        "argument `{argument}` uses `{{inputs.{name}}}` but the job has no input named `{name}`"
    )]
    UnknownInput {
        /// The input name.
        name: String,
        /// The whole argument.
        argument: String,
    },
    /// `{params.KEY}` names no parameter of the task.
    #[error(
        "argument `{argument}` uses `{{params.{name}}}` but the task has no parameter `{name}`"
    )]
    UnknownParam {
        /// The parameter name.
        name: String,
        /// The whole argument.
        argument: String,
    },
}

impl ArgTemplate {
    /// Parses one argument. `{{` and `}}` stand for literal braces; any other
    /// `{…}` must be a known [`Placeholder`].
    pub fn parse(argument: &str) -> Result<ArgTemplate, TemplateError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = argument.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|&(_, n)| n) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|&(_, n)| n) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(TemplateError::UnmatchedBrace {
                        argument: argument.to_owned(),
                    })
                }
                '{' => {
                    let rest = &argument[at + 1..];
                    let Some(len) = rest.find('}') else {
                        return Err(TemplateError::UnclosedBrace {
                            argument: argument.to_owned(),
                        });
                    };
                    let name = &rest[..len];
                    let placeholder = Placeholder::parse(name).ok_or_else(|| {
                        TemplateError::UnknownPlaceholder {
                            name: name.to_owned(),
                            argument: argument.to_owned(),
                        }
                    })?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Placeholder(placeholder));
                    // Skip the name and its closing brace.
                    for _ in 0..name.chars().count() + 1 {
                        chars.next();
                    }
                }
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(ArgTemplate { pieces })
    }

    /// The placeholders this argument uses, in order.
    pub fn placeholders(&self) -> impl Iterator<Item = &Placeholder> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Placeholder(p) => Some(p),
            Piece::Literal(_) => None,
        })
    }

    /// The argument's text when it holds no placeholder (so it is the same
    /// for every task).
    pub(crate) fn literal(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Literal(text)] => Some(text),
            _ => None,
        }
    }

    /// Substitutes every placeholder with its value for one task.
    /// `argument` is the original text, for error messages.
    pub(crate) fn render(
        &self,
        argument: &str,
        values: &PlaceholderValues<'_>,
    ) -> Result<OsString, TemplateError> {
        let mut out = OsString::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push(text),
                Piece::Placeholder(Placeholder::Input) => {
                    let input = values.input.ok_or_else(|| TemplateError::NoInput {
                        argument: argument.to_owned(),
                    })?;
                    out.push(input);
                }
                Piece::Placeholder(Placeholder::NamedInput(name)) => {
                    let path =
                        values
                            .inputs
                            .get(name)
                            .ok_or_else(|| TemplateError::UnknownInput {
                                name: name.clone(),
                                argument: argument.to_owned(),
                            })?;
                    out.push(path);
                }
                Piece::Placeholder(Placeholder::Param(key)) => {
                    let value =
                        values
                            .params
                            .get(key)
                            .ok_or_else(|| TemplateError::UnknownParam {
                                name: key.clone(),
                                argument: argument.to_owned(),
                            })?;
                    out.push(param_text(value));
                }
                Piece::Placeholder(Placeholder::OutputDir) => out.push(values.output_dir),
                Piece::Placeholder(Placeholder::TaskId) => out.push(values.task_id),
                Piece::Placeholder(Placeholder::TaskKey) => out.push(values.task_key),
            }
        }
        Ok(out)
    }
}

/// What placeholders stand for in one task.
pub(crate) struct PlaceholderValues<'a> {
    pub input: Option<&'a PathBuf>,
    pub inputs: &'a BTreeMap<String, PathBuf>,
    pub params: &'a Map<String, Value>,
    pub output_dir: &'a PathBuf,
    pub task_id: &'a str,
    pub task_key: &'a str,
}

/// How a parameter value appears in an argument or an environment variable:
/// strings verbatim (so `{params.model}` gives `rf`, not `"rf"`), anything
/// else as compact JSON (`0.1`, `true`, `null`, `[1,2]`).
pub fn param_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// The environment variable that carries the broadcast input `name`:
/// `QUARRY_INPUT_` followed by the name upper-cased, with every character
/// other than an ASCII letter, digit or `_` replaced by `_`.
pub fn input_env_var(name: &str) -> String {
    format!("QUARRY_INPUT_{}", env_suffix(name))
}

/// The environment variable that carries the parameter `key`:
/// `QUARRY_PARAM_` followed by the key, normalised as in [`input_env_var`].
pub fn param_env_var(key: &str) -> String {
    format!("QUARRY_PARAM_{}", env_suffix(key))
}

fn env_suffix(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values<'a>(
        input: Option<&'a PathBuf>,
        inputs: &'a BTreeMap<String, PathBuf>,
        params: &'a Map<String, Value>,
        output_dir: &'a PathBuf,
    ) -> PlaceholderValues<'a> {
        PlaceholderValues {
            input,
            inputs,
            params,
            output_dir,
            task_id: "t7",
            task_key: "00007",
        }
    }

    #[test]
    fn renders_every_placeholder_and_escapes() {
        let input = PathBuf::from("/cache/a.txt");
        let inputs = BTreeMap::from([("model".to_owned(), PathBuf::from("/cache/m.pkl"))]);
        let params = json!({"lr": 0.1, "name": "rf", "deep": [1, 2]});
        let params = params.as_object().unwrap();
        let out = PathBuf::from("/work/out");
        let v = values(Some(&input), &inputs, params, &out);
        let cases = [
            ("{input}", "/cache/a.txt"),
            ("--model={inputs.model}", "--model=/cache/m.pkl"),
            ("{params.lr}/{params.name}/{params.deep}", "0.1/rf/[1,2]"),
            ("{output_dir}/x", "/work/out/x"),
            ("{task_id}-{task_key}", "t7-00007"),
            ("{{literal}} }}{{", "{literal} }{"),
            ("{{{task_id}}}", "{t7}"),
            ("plain", "plain"),
            ("", ""),
        ];
        for (template, expected) in cases {
            let parsed = ArgTemplate::parse(template).unwrap();
            assert_eq!(
                parsed.render(template, &v).unwrap(),
                OsString::from(expected),
                "{template}"
            );
        }
    }

    #[test]
    fn parse_errors_name_the_argument() {
        assert_eq!(
            ArgTemplate::parse("--x={param.lr}"),
            Err(TemplateError::UnknownPlaceholder {
                name: "param.lr".into(),
                argument: "--x={param.lr}".into()
            })
        );
        assert!(matches!(
            ArgTemplate::parse("{inputs.}"),
            Err(TemplateError::UnknownPlaceholder { .. })
        ));
        assert!(matches!(
            ArgTemplate::parse("{task_id"),
            Err(TemplateError::UnclosedBrace { .. })
        ));
        assert!(matches!(
            ArgTemplate::parse("a}b"),
            Err(TemplateError::UnmatchedBrace { .. })
        ));
        let message = ArgTemplate::parse("{nope}").unwrap_err().to_string();
        assert_eq!(
            message,
            "unknown placeholder `{nope}` in argument `{nope}`; known placeholders are {input}, \
             {inputs.NAME}, {params.KEY}, {output_dir}, {task_id}, {task_key} (write `{{` and \
             `}}` for literal braces)"
        );
    }

    #[test]
    fn render_errors_for_missing_values() {
        let inputs = BTreeMap::new();
        let params = Map::new();
        let out = PathBuf::from("/o");
        let v = values(None, &inputs, &params, &out);
        let render = |t: &str| ArgTemplate::parse(t).unwrap().render(t, &v).unwrap_err();
        assert_eq!(
            render("{input}"),
            TemplateError::NoInput {
                argument: "{input}".into()
            }
        );
        assert_eq!(
            render("{inputs.model}").to_string(),
            "argument `{inputs.model}` uses `{inputs.model}` but the job has no input named `model`"
        );
        assert_eq!(
            render("{params.lr}").to_string(),
            "argument `{params.lr}` uses `{params.lr}` but the task has no parameter `lr`"
        );
    }

    #[test]
    fn only_arguments_without_placeholders_are_literal() {
        let literal = |t: &str| ArgTemplate::parse(t).unwrap().literal().map(str::to_owned);
        assert_eq!(literal("python3").as_deref(), Some("python3"));
        assert_eq!(literal("{{x}}").as_deref(), Some("{x}"));
        assert_eq!(literal("").as_deref(), Some(""));
        assert_eq!(literal("{task_id}"), None);
        assert_eq!(literal("bin/{params.tool}"), None);
    }

    #[test]
    fn placeholders_are_listed_in_order() {
        let parsed = ArgTemplate::parse("{input}:{params.k}:{inputs.m}").unwrap();
        let found: Vec<_> = parsed.placeholders().cloned().collect();
        assert_eq!(
            found,
            vec![
                Placeholder::Input,
                Placeholder::Param("k".into()),
                Placeholder::NamedInput("m".into())
            ]
        );
    }

    #[test]
    fn env_var_names_are_upper_cased_and_safe() {
        assert_eq!(input_env_var("model"), "QUARRY_INPUT_MODEL");
        assert_eq!(param_env_var("max-depth"), "QUARRY_PARAM_MAX_DEPTH");
        assert_eq!(param_env_var("n_trees2"), "QUARRY_PARAM_N_TREES2");
    }
}
