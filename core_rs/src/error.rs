//! Errors of the core, each with a stable machine-readable kind.
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

impl CoreError {
    /// Stable kind string, used by the Python and gRPC layers to map errors.
    pub fn kind(&self) -> &'static str {
        match self {
            CoreError::InvalidArgument { .. } => "invalid_argument",
            CoreError::UnknownAlgorithm(..) => "unknown_algorithm",
            CoreError::BudgetTooSmall { .. } => "budget_too_small",
            CoreError::UnknownPull { .. } => "unknown_pull",
            CoreError::CorruptSnapshot(_) => "corrupt_snapshot",
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

    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        CoreError::InvalidArgument {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, CoreError>;
