//! What the admin API shows of a task: arguments hidden or fields redacted by name.

use serde_json::Value;

use crate::record::TaskRecord;

/// Shown instead of a redacted value.
pub(crate) const REDACTED: &str = "[redacted]";

/// What sealed arguments and results read as, for an admin not allowed to see them.
pub(crate) const SEALED: &str = "[sealed]";

/// How records are shown.
#[derive(Clone, Debug)]
pub(crate) struct Redaction {
    /// Whether arguments are shown at all.
    pub(crate) display_args: bool,
    /// Object keys whose values are replaced, wherever they are (args, result, log fields).
    pub(crate) fields: Vec<String>,
    /// Whether arguments and results, sealed at rest, are shown as `"[sealed]"`.
    pub(crate) sealed: bool,
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction { display_args: true, fields: Vec::new(), sealed: false }
    }
}

impl Redaction {
    /// Arguments as the API shows them: redacted, or hidden, or sealed.
    pub(crate) fn args(&self, mut args: Value) -> Value {
        if self.sealed {
            Value::String(SEALED.to_owned())
        } else if self.display_args {
            self.redact(&mut args);
            args
        } else {
            Value::String("[hidden]".to_owned())
        }
    }

    /// `record` as the API shows it.
    pub(crate) fn apply(&self, mut record: TaskRecord) -> TaskRecord {
        record.args = self.args(std::mem::take(&mut record.args));
        if let Some(result) = &mut record.result {
            if self.sealed {
                *result = Value::String(SEALED.to_owned());
            } else {
                self.redact(result);
            }
        }
        for entry in &mut record.logs {
            for (key, value) in entry.fields.iter_mut() {
                if self.hides(key) {
                    *value = Value::String(REDACTED.to_owned());
                } else {
                    self.redact(value);
                }
            }
        }
        record
    }

    fn hides(&self, key: &str) -> bool {
        self.fields.iter().any(|field| field.eq_ignore_ascii_case(key))
    }

    fn redact(&self, value: &mut Value) {
        if self.fields.is_empty() {
            return;
        }
        match value {
            Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    if self.hides(key) {
                        *value = Value::String(REDACTED.to_owned());
                    } else {
                        self.redact(value);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.redact(item)),
            _ => {}
        }
    }
}
