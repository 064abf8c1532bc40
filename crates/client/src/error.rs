//! The one error type of every client call, with the classification retries rely on.

use std::time::Duration;

/// Why a client call did not produce an answer.
///
/// Every variant says where it came from (`endpoint` is the base URL, or a short name for
/// a non-HTTP wait). [`ClientError::is_transient`] is the single place that decides what is
/// worth retrying elsewhere or later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The connection could not be made or broke (refused, reset, DNS, protocol error).
    /// The request may or may not have reached the server.
    #[error("transport error talking to {endpoint}: {message}")]
    Transport {
        /// Base URL of the endpoint.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// No answer before the deadline. For a submission the transaction may still have been
    /// admitted.
    #[error("{what} timed out after {after_ms} ms")]
    Timeout {
        /// What was waited for (an endpoint URL, or e.g. `receipt of <hash>`).
        what: String,
        /// How long was waited, ms.
        after_ms: u64,
    },
    /// The server answered with an error status and its typed error body.
    #[error("HTTP {status} from {endpoint}: {code}: {message}")]
    Http {
        /// Base URL of the endpoint.
        endpoint: String,
        /// HTTP status code.
        status: u16,
        /// The server's snake-case error code (`http_<status>` when the body had none).
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server sheds load: HTTP 503 or 429. Retry later or elsewhere.
    #[error("{endpoint} is overloaded (HTTP {status}): {code}: {message}")]
    Overloaded {
        /// Base URL of the endpoint.
        endpoint: String,
        /// 503 or 429.
        status: u16,
        /// The server's error code (`overloaded`, `timeout`, ...).
        code: String,
        /// The server's message.
        message: String,
    },
    /// The answer was not what the API documents (bad JSON, wrong count of results).
    #[error("undecodable answer from {endpoint}: {message}")]
    Decode {
        /// Base URL of the endpoint.
        endpoint: String,
        /// What did not decode.
        message: String,
    },
    /// A balanced client has no healthy endpoint right now.
    #[error("no healthy endpoint among {endpoints}")]
    NoHealthyEndpoint {
        /// How many endpoints are configured.
        endpoints: usize,
    },
    /// A client-side bound was reached (e.g. too many receipt waiters at once).
    #[error("client-side limit reached: at most {max} {what}")]
    LocalLimit {
        /// What is bounded.
        what: String,
        /// The bound.
        max: usize,
    },
    /// The caller's input cannot be sent (a malformed URL, an empty endpoint list).
    #[error("invalid request: {message}")]
    Invalid {
        /// What is wrong.
        message: String,
    },
}

impl ClientError {
    /// True when the same request may succeed later or on another endpoint: transport
    /// errors, timeouts, overload, 5xx, no healthy endpoint. False for 4xx answers, decode
    /// errors and invalid input, which would fail the same way again.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { .. }
            | ClientError::Timeout { .. }
            | ClientError::Overloaded { .. }
            | ClientError::NoHealthyEndpoint { .. }
            | ClientError::LocalLimit { .. } => true,
            ClientError::Http { status, .. } => *status >= 500,
            ClientError::Decode { .. } | ClientError::Invalid { .. } => false,
        }
    }

    /// True when a request that failed this way may nevertheless have been processed by the
    /// server (the answer was lost, not refused).
    pub fn is_ambiguous(&self) -> bool {
        match self {
            ClientError::Transport { .. } | ClientError::Timeout { .. } => true,
            // A 503 `timeout` means the server's own deadline passed while it was working.
            ClientError::Overloaded { code, .. } => code == "timeout",
            ClientError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// A timeout error for `what` after `after`.
    pub fn timeout(what: impl Into<String>, after: Duration) -> ClientError {
        ClientError::Timeout {
            what: what.into(),
            after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let http = |status| ClientError::Http {
            endpoint: "e".into(),
            status,
            code: "c".into(),
            message: "m".into(),
        };
        assert!(http(500).is_transient());
        assert!(!http(400).is_transient());
        assert!(!http(404).is_ambiguous());
        let overloaded = ClientError::Overloaded {
            endpoint: "e".into(),
            status: 503,
            code: "overloaded".into(),
            message: "m".into(),
        };
        assert!(overloaded.is_transient());
        assert!(!overloaded.is_ambiguous());
        assert!(ClientError::timeout("x", Duration::from_millis(5)).is_ambiguous());
        assert!(!ClientError::Invalid {
            message: "m".into()
        }
        .is_transient());
    }
}
