//! Errors of the core, each with a stable machine-readable kind, the field at fault and the
//! reason in words (the message is "field: reason"), so no caller parses the message text.
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    /// A configuration value is out of range; `field` names it.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("algorithm: unknown algorithm '{0}' (known: {1})")]
    UnknownAlgorithm(String, String),
    #[error("budget: {budget} queries is below the {needed} that {algorithm} needs for {models} models ({why})")]
    BudgetTooSmall {
        algorithm: String,
        budget: u64,
        needed: u64,
        models: usize,
        why: String,
    },
    #[error("pull (model {model}, item {item}) is not in flight")]
    UnknownPull { model: u32, item: u32 },
    #[error("snapshot: {0}")]
    CorruptSnapshot(String),
}

/// Which rule an error breaks: what the Python and gRPC layers map errors by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    UnknownAlgorithm,
    BudgetTooSmall,
    UnknownPull,
    CorruptSnapshot,
}

impl ErrorKind {
    /// The stable name Python sees as `SearchError.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::UnknownAlgorithm => "unknown_algorithm",
            ErrorKind::BudgetTooSmall => "budget_too_small",
            ErrorKind::UnknownPull => "unknown_pull",
            ErrorKind::CorruptSnapshot => "corrupt_snapshot",
        }
    }
}

impl CoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CoreError::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            CoreError::UnknownAlgorithm(..) => ErrorKind::UnknownAlgorithm,
            CoreError::BudgetTooSmall { .. } => ErrorKind::BudgetTooSmall,
            CoreError::UnknownPull { .. } => ErrorKind::UnknownPull,
            CoreError::CorruptSnapshot(_) => ErrorKind::CorruptSnapshot,
        }
    }

    /// The request field the error is about.
    pub fn field(&self) -> &str {
        match self {
            CoreError::InvalidArgument { field, .. } => field,
            CoreError::UnknownAlgorithm(..) => "algorithm",
            CoreError::BudgetTooSmall { .. } => "budget",
            CoreError::UnknownPull { .. } => "pull",
            CoreError::CorruptSnapshot(_) => "snapshot",
        }
    }

    /// The reason in words, without the field: the message is "{field}: {reason}" (an unknown
    /// pull, which names no request field, is only its reason).
    pub fn reason(&self) -> String {
        let message = self.to_string();
        match message.strip_prefix(&format!("{}: ", self.field())) {
            Some(reason) => reason.to_string(),
            None => message,
        }
    }

    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        CoreError::InvalidArgument {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, CoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_the_field_and_the_reason() {
        let errors = [
            CoreError::invalid("params.c", "must be a number: above 0"),
            CoreError::UnknownAlgorithm("x".into(), "gem".into()),
            CoreError::BudgetTooSmall {
                algorithm: "gem".into(),
                budget: 5,
                needed: 9,
                models: 3,
                why: "each round: one item".into(),
            },
            CoreError::CorruptSnapshot("bad header: x".into()),
        ];
        for err in errors {
            assert_eq!(
                err.to_string(),
                format!("{}: {}", err.field(), err.reason())
            );
        }
        assert_eq!(
            CoreError::invalid("params.c", "must be: 1").reason(),
            "must be: 1"
        );
        let pull = CoreError::UnknownPull { model: 1, item: 2 };
        assert_eq!(pull.reason(), pull.to_string());
        assert_eq!(pull.kind().as_str(), "unknown_pull");
    }
}
