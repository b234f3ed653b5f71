//! The one error type of the server and its mapping onto gRPC statuses, worded like Qdrant's.

use qdrant_edge::OperationError;
use tonic::Status;

pub(crate) type EdgeResult<T> = Result<T, EdgeError>;

/// What a request can fail with. The messages follow Qdrant's `StorageError` wording, so a client
/// sees the same text as from a real server ("Wrong input: ...", "Not found: ...").
#[derive(Debug, thiserror::Error)]
pub(crate) enum EdgeError {
    #[error("Wrong input: {0}")]
    BadInput(String),
    #[error("Not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("Service internal error: {0}")]
    Internal(String),
}

impl EdgeError {
    pub(crate) fn bad_input(description: impl Into<String>) -> EdgeError {
        EdgeError::BadInput(description.into())
    }

    pub(crate) fn internal(description: impl Into<String>) -> EdgeError {
        EdgeError::Internal(description.into())
    }

    pub(crate) fn unimplemented(what: &str) -> EdgeError {
        EdgeError::Unimplemented(format!("{what} is not supported by the qdrant-edge test server"))
    }

    pub(crate) fn collection_not_found(name: &str) -> EdgeError {
        EdgeError::NotFound(format!("Collection `{name}` doesn't exist!"))
    }
}

impl From<OperationError> for EdgeError {
    fn from(err: OperationError) -> EdgeError {
        match err {
            OperationError::WrongVectorDimension { .. }
            | OperationError::VectorNameNotExists { .. }
            | OperationError::TypeError { .. }
            | OperationError::TypeInferenceError { .. }
            | OperationError::ValidationError { .. }
            | OperationError::WrongSparse
            | OperationError::WrongMulti
            | OperationError::MissingRangeIndexForOrderBy { .. }
            | OperationError::MissingMapIndexForFacet { .. }
            | OperationError::VariableTypeError { .. }
            | OperationError::NonFiniteNumber { .. } => EdgeError::BadInput(err.to_string()),
            OperationError::PointIdError { .. } => EdgeError::NotFound(err.to_string()),
            // The backtrace of a service error is for logs, not for the client.
            OperationError::ServiceError { description, .. } => EdgeError::Internal(description),
            _ => EdgeError::Internal(err.to_string()),
        }
    }
}

impl From<EdgeError> for Status {
    fn from(err: EdgeError) -> Status {
        let message = err.to_string();
        match err {
            EdgeError::BadInput(_) => Status::invalid_argument(message),
            EdgeError::NotFound(_) => Status::not_found(message),
            EdgeError::Unimplemented(_) => Status::unimplemented(message),
            EdgeError::Internal(_) => Status::internal(message),
        }
    }
}
