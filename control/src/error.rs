//! [`ApiError`]: every refusal of the HTTP API, as JSON `{"error":{"code","message","field"?,
//! "retryAfterMs"?}}` with the status that fits. The codes are stable (docs/api.md lists them).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// A refusal of the API. `code()` is the stable wire code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not the JSON the endpoint takes.
    #[error("{0}")]
    BadRequest(String),
    /// 400: the quiz fails validation; `field` names it (`questions[2].correct`).
    #[error("{message}")]
    InvalidQuiz {
        field: Option<String>,
        message: String,
    },
    /// 400: room settings out of range (the room-creation function refused them).
    #[error("{0}")]
    InvalidSettings(String),
    /// 401: no key, a malformed key, an unknown or revoked key.
    #[error("a valid API key is required (Authorization: Bearer <key>)")]
    Unauthorized,
    /// 403: the quiz is someone else's (public: readable and hostable, not changeable).
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such quiz (or a private quiz of another host: it is not revealed that it exists).
    #[error("no such quiz: {0}")]
    QuizNotFound(String),
    /// 404: no such game among this host's games.
    #[error("no such game: {0}")]
    GameNotFound(String),
    /// 404: no such endpoint.
    #[error("no such endpoint")]
    NotFound,
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the quiz id is used by another quiz.
    #[error("quiz id {0} is taken")]
    QuizIdTaken(String),
    /// 409: the game has not ended, or its results are not stored yet.
    #[error("the results of game {0} are not stored yet")]
    ResultsPending(String),
    /// 413: the body is over the limit.
    #[error("the request body is over {0} bytes")]
    TooLarge(usize),
    /// 415: not `Content-Type: application/json`.
    #[error("send Content-Type: application/json")]
    UnsupportedMediaType,
    /// 429: too many failed authentications (or requests) from this address.
    #[error("too many requests from this address; retry after {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    /// 503: PostgreSQL or Redis is unreachable; retry.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug; the log has the details.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidQuiz { .. } => "invalid_quiz",
            ApiError::InvalidSettings(_) => "invalid_settings",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::QuizNotFound(_) => "quiz_not_found",
            ApiError::GameNotFound(_) => "game_not_found",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::QuizIdTaken(_) => "quiz_id_taken",
            ApiError::ResultsPending(_) => "results_pending",
            ApiError::TooLarge(_) => "too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_)
            | ApiError::InvalidQuiz { .. }
            | ApiError::InvalidSettings(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::QuizNotFound(_) | ApiError::GameNotFound(_) | ApiError::NotFound => {
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::QuizIdTaken(_) | ApiError::ResultsPending(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut e = serde_json::json!({ "code": self.code(), "message": self.to_string() });
        if let ApiError::InvalidQuiz {
            field: Some(field), ..
        } = self
        {
            e["field"] = field.clone().into();
        }
        if let ApiError::RateLimited { retry_after_ms } = self {
            e["retryAfterMs"] = (*retry_after_ms).into();
        }
        serde_json::json!({ "error": e })
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        if e.is_closed() || e.as_db_error().is_none() {
            ApiError::Unavailable(format!("database unavailable: {e}"))
        } else {
            ApiError::Internal(format!("database: {e}"))
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::Unavailable(format!("database unavailable: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(detail) => tracing::error!(%detail, "internal error"),
            ApiError::Unavailable(detail) => tracing::warn!(%detail, "unavailable"),
            _ => {}
        }
        crate::metrics::METRICS.api_error(self.code());
        let mut resp = (self.status(), axum::Json(self.body())).into_response();
        if let ApiError::RateLimited { retry_after_ms } = self {
            let secs = retry_after_ms.div_ceil(1000).max(1);
            if let Ok(v) = secs.to_string().parse() {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp
    }
}
