//! One expression language, CEL, for step pre/postconditions (and, later, workflow conditions
//! and policy matchers). Expressions are compiled once and evaluated over JSON-like variables;
//! no host-language `eval` is ever involved.

use crate::error::{Error, Result};

thread_local! {
    static STDLIB: cel::Context<'static, 'static> = cel::Context::default();
}

/// Longest condition accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 4096;
/// Deepest nesting of brackets accepted.
pub const MAX_NESTING: usize = 32;
/// Most operators (member access, unary and binary) in one condition. The parser and the
/// evaluator recurse once per nesting level and per operator of a chain; these bounds keep a
/// condition that came from outside (a policy or workflow document, a daemon request) from
/// exhausting the stack, which would abort the process rather than fail the call.
pub const MAX_OPERATORS: usize = 256;

/// Whether `source` is within [`MAX_SOURCE_BYTES`], [`MAX_NESTING`] and [`MAX_OPERATORS`]
/// (outside string literals); the problem when it is not.
fn check_bounds(source: &str) -> std::result::Result<(), String> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(format!(
            "it is {} bytes long; a condition may be at most {MAX_SOURCE_BYTES}",
            source.len()
        ));
    }
    let (mut depth, mut deepest, mut operators) = (0usize, 0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            match c {
                '\\' => {
                    chars.next();
                }
                c if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            '.' | '!' | '+' | '-' | '*' | '/' | '%' | '<' | '>' | '?' => operators += 1,
            '&' | '|' | '=' if chars.peek() == Some(&c) => {
                chars.next();
                operators += 1;
            }
            _ => {}
        }
    }
    if deepest > MAX_NESTING {
        return Err(format!(
            "it nests brackets {deepest} deep; a condition may nest at most {MAX_NESTING}"
        ));
    }
    if operators > MAX_OPERATORS {
        return Err(format!(
            "it has {operators} operators; a condition may have at most {MAX_OPERATORS}"
        ));
    }
    Ok(())
}

/// A compiled boolean CEL expression.
pub struct Condition {
    source: String,
    program: cel::Program,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

impl Condition {
    /// Parses `source`; a syntax error names the expression and where it went wrong.
    ///
    /// ```
    /// use omium_spec::expr::Condition;
    /// let c = Condition::compile("result.verified == true && args[0].age >= 18").unwrap();
    /// let ok = c.evaluate(&[
    ///     ("result", serde_json::json!({"verified": true})),
    ///     ("args", serde_json::json!([{"age": 30}])),
    /// ]).unwrap();
    /// assert!(ok);
    /// assert!(matches!(Condition::compile("result =="), Err(omium_spec::Error::ConditionSyntax { .. })));
    /// ```
    pub fn compile(source: &str) -> Result<Condition> {
        check_bounds(source).map_err(|detail| Error::ConditionSyntax {
            expression: source.chars().take(200).collect(),
            detail,
        })?;
        let program = std::panic::catch_unwind(|| cel::Program::compile(source))
            .map_err(|_| Error::ConditionSyntax {
                expression: source.into(),
                detail: "the parser rejected it".into(),
            })?
            .map_err(|e| Error::ConditionSyntax {
                expression: source.into(),
                detail: e.to_string().trim().to_string(),
            })?;
        Ok(Condition {
            source: source.into(),
            program,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates with variables already in CEL's value model (no JSON conversion: the fast
    /// path for callers that build their own variables, such as policy matchers).
    pub(crate) fn evaluate_cel(&self, vars: &[(&str, cel::Value)]) -> Result<bool> {
        let result = STDLIB.with(|root| {
            let mut ctx = root.new_inner_scope();
            for (name, value) in vars {
                ctx.add_variable_from_value(*name, value.clone());
            }
            self.program.execute(&ctx)
        });
        match result {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(Error::ConditionEval {
                expression: self.source.clone(),
                detail: format!("it returned {other:?}, expected a boolean"),
            }),
            Err(e) => Err(Error::ConditionEval {
                expression: self.source.clone(),
                detail: e.to_string(),
            }),
        }
    }

    /// Evaluates with the given variables; anything but a boolean result is an error.
    pub fn evaluate<S: AsRef<str>>(&self, vars: &[(S, serde_json::Value)]) -> Result<bool> {
        let eval_err = |detail: String| Error::ConditionEval {
            expression: self.source.clone(),
            detail,
        };
        let result = STDLIB.with(|root| {
            // The standard library is built once per thread; each evaluation only adds its
            // variables in a child scope (building it per call cost ~70 µs).
            let mut ctx = root.new_inner_scope();
            for (name, value) in vars {
                let name = name.as_ref();
                ctx.add_variable(name.to_string(), to_cel(value))
                    .map_err(|e| eval_err(format!("variable {name}: {e}")))?;
            }
            self.program
                .execute(&ctx)
                .map_err(|e| eval_err(e.to_string()))
        })?;
        match result {
            cel::Value::Bool(b) => Ok(b),
            other => Err(eval_err(format!(
                "it returned {other:?}, expected a boolean"
            ))),
        }
    }
}

/// A JSON value as CEL sees it. Integers are CEL `int` (an `uint` only beyond `i64`), so that
/// `args[0] + 1` works on the 7 a binding passed (serde's route made every non-negative number a
/// `uint`, and CEL does not add `uint` and `int`).
fn to_cel(v: &serde_json::Value) -> cel::Value {
    use serde_json::Value as J;
    match v {
        J::Null => cel::Value::Null,
        J::Bool(b) => cel::Value::Bool(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            _ => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => cel::Value::String(s.clone().into()),
        J::Array(items) => cel::Value::List(items.iter().map(to_cel).collect::<Vec<_>>().into()),
        J::Object(m) => cel::Value::Map(
            m.iter()
                .map(|(k, v)| (k.clone(), to_cel(v)))
                .collect::<std::collections::HashMap<String, cel::Value>>()
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Long operator chains recurse in the parser and the evaluator: 2,000 `+` overflowed a
    /// 2 MiB stack (an abort, not an error). They are refused before parsing, naming the bound.
    #[test]
    fn deep_or_long_conditions_are_refused_before_they_reach_the_parser() {
        let cases = [
            (
                "(".repeat(5000) + "true" + &")".repeat(5000),
                "it is 10004 bytes long; a condition may be at most 4096",
            ),
            (
                "[".repeat(40) + &"]".repeat(40) + " == []",
                "it nests brackets 40 deep; a condition may nest at most 32",
            ),
            (
                "!".repeat(300) + "true",
                "it has 300 operators; a condition may have at most 256",
            ),
            (
                "1".to_string() + &" + 1".repeat(300) + " > 0",
                "it has 301 operators; a condition may have at most 256",
            ),
            (
                "a".to_string() + &".b".repeat(300) + " == 1",
                "it has 301 operators; a condition may have at most 256",
            ),
        ];
        for (source, expected) in cases {
            let e = Condition::compile(&source).unwrap_err();
            assert!(matches!(e, Error::ConditionSyntax { .. }), "{e}");
            assert!(e.to_string().ends_with(expected), "{e}");
        }
        // At the bounds, conditions still compile and run.
        let deep = "(".repeat(MAX_NESTING) + "true" + &")".repeat(MAX_NESTING);
        assert!(Condition::compile(&deep)
            .unwrap()
            .evaluate::<&str>(&[])
            .unwrap());
        let long = "1".to_string() + &" + 1".repeat(MAX_OPERATORS - 1) + " == 256";
        assert!(Condition::compile(&long)
            .unwrap()
            .evaluate::<&str>(&[])
            .unwrap());
        // Operators inside string literals are text, not operators.
        let text = format!("result == '{}'", "+".repeat(1000));
        Condition::compile(&text).unwrap();
    }

    #[test]
    fn integers_are_cel_ints() {
        let c = Condition::compile("args[0] + 1 == result && args[1] - 10 < 0 && args[2] > 1.5")
            .unwrap();
        assert!(c
            .evaluate(&[("args", json!([7, 3, 2.5])), ("result", json!(8))])
            .unwrap());
        let big = Condition::compile("args[0] > 0u").unwrap();
        assert!(big.evaluate(&[("args", json!([u64::MAX]))]).unwrap());
    }

    #[test]
    fn evaluates_over_args_kwargs_and_result() {
        let c = Condition::compile("kwargs.limit > 10 && size(result.items) == 2").unwrap();
        assert!(c
            .evaluate(&[
                ("kwargs", json!({"limit": 20})),
                ("result", json!({"items": [1, 2]}))
            ])
            .unwrap());
        assert!(!c
            .evaluate(&[
                ("kwargs", json!({"limit": 5})),
                ("result", json!({"items": [1, 2]}))
            ])
            .unwrap());
    }

    #[test]
    fn errors_name_the_expression() {
        let err = Condition::compile("result.ok &&").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("condition \"result.ok &&\" does not parse: "),
            "{err}"
        );
        let c = Condition::compile("result.missing == 1").unwrap();
        let err = c.evaluate(&[("result", json!({}))]).unwrap_err();
        assert!(matches!(err, Error::ConditionEval { .. }), "{err}");
        let c = Condition::compile("1 + 1").unwrap();
        assert!(c
            .evaluate::<&str>(&[])
            .unwrap_err()
            .to_string()
            .contains("expected a boolean"));
    }
}
