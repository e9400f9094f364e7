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

    /// Records a violation with a constraint text of its own (`Map keys must …`,
    /// `Member must satisfy constraint: […]`); `shown` is the rendered value.
    pub fn add_raw(&mut self, field: &str, shown: &str, constraint: &str) {
        self.list.push(format!(
            "Value '{shown}' at '{field}' failed to satisfy constraint: {constraint}"
        ));
    }

    /// A list of strings: item count bounds, then each item's length bounds (violated
    /// member constraints are reported once, for the whole list).
    pub fn string_list(
        &mut self,
        field: &str,
        items: &[String],
        count: (usize, usize),
        len: (usize, usize),
    ) {
        let shown = list_shown(items);
        self.length(field, &shown, items.len(), count.0, count.1);
        let inner = member_constraints(items.iter().map(String::as_str), len);
        if !inner.is_empty() {
            self.add_raw(
                field,
                &shown,
                &format!("Member must satisfy constraint: [{}]", inner.join(", ")),
            );
        }
    }

    /// A list of enum values.
    pub fn enum_list(
        &mut self,
        field: &str,
        items: &[String],
        count: (usize, usize),
        allowed: &[&str],
    ) -> bool {
        let shown = list_shown(items);
        self.length(field, &shown, items.len(), count.0, count.1);
        if items.iter().all(|i| allowed.contains(&i.as_str())) {
            return true;
        }
        self.add_raw(
            field,
            &shown,
            &format!(
                "Member must satisfy constraint: [Member must satisfy enum value set: [{}]]",
                allowed.join(", ")
            ),
        );
        false
    }

    /// A map of strings: entry count bounds, key and value length bounds.
    pub fn string_map(
        &mut self,
        field: &str,
        map: &std::collections::BTreeMap<String, String>,
        count: (usize, usize),
        key_len: (usize, usize),
        value_len: (usize, usize),
    ) {
        let shown = format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.length(field, &shown, map.len(), count.0, count.1);
        let keys = member_constraints(map.keys().map(String::as_str), key_len);
        if !keys.is_empty() {
            self.add_raw(
                field,
                &shown,
                &format!("Map keys must satisfy constraint: [{}]", keys.join(", ")),
            );
        }
        let values = member_constraints(map.values().map(String::as_str), value_len);
        if !values.is_empty() {
            self.add_raw(
                field,
                &shown,
                &format!("Map value must satisfy constraint: [{}]", values.join(", ")),
            );
        }
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

/// A list as validation messages show it: `[a, b]`.
pub fn list_shown(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

/// The length constraints (`Member must …`) some of `items` violate, each once.
fn member_constraints<'a>(
    items: impl Iterator<Item = &'a str>,
    (min, max): (usize, usize),
) -> Vec<String> {
    let (mut short, mut long) = (false, false);
    for i in items {
        let n = i.chars().count();
        short |= n < min;
        long |= n > max;
    }
    let mut out = Vec::new();
    if long {
        out.push(format!(
            "Member must have length less than or equal to {max}"
        ));
    }
    if short {
        out.push(format!(
            "Member must have length greater than or equal to {min}"
        ));
    }
    out
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
