//! Errors that end a request with a page. `detail` is shown to the person and logged, so it
//! never contains tokens, codes or secrets.
use actix_web::http::StatusCode;

#[derive(Debug)]
pub struct AppError {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
}

impl AppError {
    /// Something about this request is wrong (expired login, bad state, refused code).
    pub fn bad_request(title: &'static str, detail: impl Into<String>) -> Self {
        AppError { status: StatusCode::BAD_REQUEST, title, detail: detail.into() }
    }

    /// atsso could not be reached or answered unexpectedly.
    pub fn upstream(title: &'static str, detail: impl Into<String>) -> Self {
        AppError { status: StatusCode::BAD_GATEWAY, title, detail: detail.into() }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.title, self.detail)
    }
}
