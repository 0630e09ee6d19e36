//! [`TaskId`]: the identity of one enqueued task.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::Error;

/// The id of an enqueued task: a UUID of version 7 (RFC 9562), whose first 48 bits are the
/// creation time in milliseconds and the other 74 random. Ids of tasks enqueued together sort
/// together, so a database's index of ids takes new ones on its last pages instead of on a
/// random page each (which, per commit, would write one page per task).
///
/// It serialises as its hyphenated string and parses from one; a malformed string is an
/// [`Error::InvalidTaskId`], never a panic.
///
/// ```
/// use taskflow::TaskId;
///
/// let id = TaskId::new();
/// let parsed: TaskId = id.to_string().parse().unwrap();
/// assert_eq!(id, parsed);
/// assert!("not-a-uuid".parse::<TaskId>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(Uuid);

impl TaskId {
    /// A fresh id: the current time, then random bits.
    pub fn new() -> Self {
        TaskId(Uuid::new_v7(uuid::Timestamp::now(uuid::NoContext)))
    }

    /// The id as a UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for TaskId {
    fn default() -> Self {
        TaskId::new()
    }
}

impl From<Uuid> for TaskId {
    fn from(uuid: Uuid) -> Self {
        TaskId(uuid)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskId({})", self.0.hyphenated())
    }
}

impl FromStr for TaskId {
    type Err = Error;

    fn from_str(input: &str) -> Result<Self, Error> {
        Uuid::try_parse(input)
            .map(TaskId)
            .map_err(|_| Error::InvalidTaskId { input: truncate(input, 64) })
    }
}

fn truncate(input: &str, max: usize) -> String {
    match input.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &input[..end]),
        None => input.to_owned(),
    }
}

impl Serialize for TaskId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buf = Uuid::encode_buffer();
        serializer.serialize_str(self.0.hyphenated().encode_lower(&mut buf))
    }
}

impl<'de> Deserialize<'de> for TaskId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "axum")]
impl utoipa::PartialSchema for TaskId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .description(Some("A task id: a UUID (version 7 for new tasks)."))
            .into()
    }
}

#[cfg(feature = "axum")]
impl utoipa::ToSchema for TaskId {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_is_a_plain_string() {
        let id = TaskId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<TaskId>(&json).unwrap(), id);
    }

    #[test]
    fn bad_strings_are_errors() {
        let err = "1234".parse::<TaskId>().unwrap_err();
        assert_eq!(err.to_string(), "invalid task id `1234`: expected a UUID");
        assert!(serde_json::from_str::<TaskId>("\"nope\"").is_err());
        assert!(serde_json::from_str::<TaskId>("17").is_err());
    }

    #[test]
    fn ids_are_version_7_and_later_ones_sort_after() {
        let first = TaskId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = TaskId::new();
        assert_eq!(first.as_uuid().get_version_num(), 7);
        assert!(first < second, "{first} then {second}");
        assert!(first.to_string() < second.to_string());
    }
}
