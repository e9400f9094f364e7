//! Model-constraint checks reported the AWS way: every violated constraint of a request is
//! collected, then answered as one `ValidationException`
//! (`2 validation errors detected: Value 'x' at 'streamName' failed to satisfy constraint:
//! Member must …; Value …`). Semantic errors (`InvalidArgumentException`) are not made here.

use spate_proto::kinesis::{ErrorKind, KinesisError, KinesisResult};

/// A regular-expression constraint: its text (for messages) and the check implementing it.
pub type Pattern = (&'static str, fn(&str) -> bool);

/// Collects constraint violations for one request.
#[derive(Debug, Default)]
pub struct Violations {
    list: Vec<String>,
}

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one violation. `value` is the already-rendered value (`None` = null).
    pub fn add(&mut self, field: &str, value: Option<&str>, constraint: &str) {
        let shown = match value {
            Some(v) => format!("'{v}'"),
            None => "null".to_string(),
        };
        self.list.push(format!(
            "Value {shown} at '{field}' failed to satisfy constraint: Member must {constraint}"
        ));
    }

    /// A required member: records `must not be null` when absent; returns the value.
    pub fn required<'a, T>(&mut self, field: &str, value: &'a Option<T>) -> Option<&'a T> {
        if value.is_none() {
            self.add(field, None, "not be null");
        }
        value.as_ref()
    }

    /// Length bounds (in characters) and an optional pattern of a string member.
    pub fn string(
        &mut self,
        field: &str,
        value: &str,
        min: usize,
        max: usize,
        pattern: Option<Pattern>,
    ) {
        if let Some((pattern, matches)) = pattern {
            if !matches(value) {
                self.add(
                    field,
                    Some(value),
                    &format!("satisfy regular expression pattern: {pattern}"),
                );
            }
        }
        self.length(field, value, value.chars().count(), min, max);
    }

    /// Length bounds of a member whose length is `len`; `shown` renders it in the message.
    pub fn length(&mut self, field: &str, shown: &str, len: usize, min: usize, max: usize) {
        if len < min {
            self.add(
                field,
                Some(shown),
                &format!("have length greater than or equal to {min}"),
            );
        }
        if len > max {
            self.add(
                field,
                Some(shown),
                &format!("have length less than or equal to {max}"),
            );
        }
    }

    /// Value bounds of an integer member.
    pub fn range(&mut self, field: &str, value: i64, min: Option<i64>, max: Option<i64>) {
        let shown = value.to_string();
        if let Some(min) = min.filter(|m| value < *m) {
            self.add(
                field,
                Some(&shown),
                &format!("have value greater than or equal to {min}"),
            );
        }
        if let Some(max) = max.filter(|m| value > *m) {
            self.add(
                field,
                Some(&shown),
                &format!("have value less than or equal to {max}"),
            );
        }
    }

    /// An enum member; returns whether the value is one of `allowed`.
    pub fn one_of(&mut self, field: &str, value: &str, allowed: &[&str]) -> bool {
        if allowed.contains(&value) {
            return true;
        }
        self.add(
            field,
            Some(value),
            &format!("satisfy enum value set: [{}]", allowed.join(", ")),
        );
        false
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// `Ok(())` when nothing was violated, else the combined `ValidationException`.
    pub fn finish(self) -> KinesisResult<()> {
        if self.list.is_empty() {
            return Ok(());
        }
        let n = self.list.len();
        let plural = if n == 1 { "error" } else { "errors" };
        Err(KinesisError::new(
            ErrorKind::Validation,
            format!("{n} validation {plural} detected: {}", self.list.join("; ")),
        ))
    }
}

/// How a blob's value is shown in a validation message.
pub fn blob_shown(len: usize) -> String {
    format!("<{len} bytes>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ident::{is_name_chars, NAME_PATTERN};

    fn run(f: impl FnOnce(&mut Violations)) -> Option<String> {
        let mut v = Violations::new();
        f(&mut v);
        match v.finish() {
            Ok(()) => None,
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::Validation);
                assert_eq!(e.kind.http_status(), 400);
                Some(e.message)
            }
        }
    }

    #[test]
    fn constraint_messages() {
        let name = Some((NAME_PATTERN, is_name_chars as fn(&str) -> bool));
        let long_key = "k".repeat(257);
        let long_key_msg = format!("1 validation error detected: Value '{long_key}' at 'partitionKey' failed to satisfy constraint: Member must have length less than or equal to 256");
        type Case<'a> = (Box<dyn FnOnce(&mut Violations) + 'a>, Option<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            (Box::new(|v: &mut Violations| v.string("streamName", "ok", 1, 128, name)), None),
            (
                Box::new(|v: &mut Violations| v.string("streamName", "a b", 1, 128, name)),
                Some("1 validation error detected: Value 'a b' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+"),
            ),
            (
                Box::new(|v: &mut Violations| v.string("streamName", "", 1, 128, name)),
                Some("2 validation errors detected: Value '' at 'streamName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+; Value '' at 'streamName' failed to satisfy constraint: Member must have length greater than or equal to 1"),
            ),
            (
                Box::new(|v: &mut Violations| v.string("partitionKey", &long_key, 1, 256, None)),
                Some(&long_key_msg),
            ),
            (
                Box::new(|v: &mut Violations| v.range("shardCount", 0, Some(1), None)),
                Some("1 validation error detected: Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1"),
            ),
            (
                Box::new(|v: &mut Violations| v.range("limit", 10001, Some(1), Some(10000))),
                Some("1 validation error detected: Value '10001' at 'limit' failed to satisfy constraint: Member must have value less than or equal to 10000"),
            ),
            (
                Box::new(|v: &mut Violations| {
                    v.required::<String>("streamName", &None);
                }),
                Some("1 validation error detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null"),
            ),
            (
                Box::new(|v: &mut Violations| {
                    v.one_of("shardIteratorType", "NOPE", &["LATEST", "TRIM_HORIZON"]);
                }),
                Some("1 validation error detected: Value 'NOPE' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [LATEST, TRIM_HORIZON]"),
            ),
            (
                Box::new(|v: &mut Violations| v.length("data", &blob_shown(1_048_577), 1_048_577, 0, 1_048_576)),
                Some("1 validation error detected: Value '<1048577 bytes>' at 'data' failed to satisfy constraint: Member must have length less than or equal to 1048576"),
            ),
        ];
        for (i, (f, want)) in cases.into_iter().enumerate() {
            assert_eq!(run(f).as_deref(), want, "case {i}");
        }
    }
}
