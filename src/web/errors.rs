//! How the errors of `crate::error` become HTTP responses, in one place: status, protocol
//! headers (`WWW-Authenticate`, `Retry-After`), the JSON bodies of RFC 6749/6750 and the error page.
use actix_web::{
    http::{header, StatusCode},
    HttpResponse, ResponseError,
};
use serde_json::json;

use crate::{
    error::{ApiError, BearerError, ErrorCode, OAuthError, PageError},
    templates,
};

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        match self.code {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable if self.rate_limited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, "no-store")).insert_header((header::PRAGMA, "no-cache"));
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if self.code == ErrorCode::InvalidClient {
            let scheme = if self.basic_challenge { "Basic" } else { "Bearer" };
            response.insert_header((header::WWW_AUTHENTICATE, format!("{scheme} realm=\"atsso\"")));
        }
        response.json(json!({ "error": self.code.as_str(), "error_description": self.description }))
    }
}

impl ResponseError for BearerError {
    fn status_code(&self) -> StatusCode {
        match self.code {
            ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if self.code == ErrorCode::TemporarilyUnavailable {
            return HttpResponse::build(self.status_code())
                .insert_header((header::RETRY_AFTER, crate::error::UNAVAILABLE_RETRY_AFTER_SECS.to_string()))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .json(json!({ "error": self.code.as_str(), "error_description": self.description }));
        }
        let challenge = if self.code == ErrorCode::ServerError {
            "Bearer realm=\"atsso\"".to_string()
        } else {
            format!(
                "Bearer realm=\"atsso\", error=\"{}\", error_description=\"{}\"",
                self.code.as_str(),
                self.description.replace(['"', '\\'], "'")
            )
        };
        HttpResponse::build(self.status_code())
            .insert_header((header::WWW_AUTHENTICATE, challenge))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({ "error": self.code.as_str(), "error_description": self.description }))
    }
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut context = tera::Context::new();
        context.insert("title", &self.title);
        context.insert("message", &self.message);
        context.insert("status", &self.status.as_u16());
        if let Some(id) = &self.error_id {
            context.insert("error_id", id);
        }
        // Rendered while the request is served (inside its request-id scope).
        if let Some(id) = super::request_id::current() {
            context.insert("request_id", &id);
        }
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        // The security headers are added by the one HTML middleware (web::security_headers).
        response.content_type("text/html; charset=utf-8").body(templates::render("error.html", &context))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"atsso-admin\""));
        }
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        let mut body = json!({ "error": self.message });
        if !self.fields.is_empty() {
            body["fields"] = json!(self.fields);
        }
        response.json(body)
    }
}

/// A refused authorization request is a page; a redirect is not an error here (callers handle it).
impl From<crate::oidc::authorize::AuthorizeError> for PageError {
    fn from(err: crate::oidc::authorize::AuthorizeError) -> Self {
        use crate::oidc::authorize::AuthorizeError;
        match err {
            AuthorizeError::Refused(refusal) => PageError::bad_request(refusal.title, refusal.message),
            AuthorizeError::Internal(cause) => PageError::internal(&cause),
            AuthorizeError::Unavailable(cause) => PageError::unavailable(&cause),
            // Only reached where a redirect cannot be followed (a bug): say so without leaking.
            AuthorizeError::Redirect(_) => PageError::internal(&"unexpected redirect outcome"),
        }
    }
}

impl From<crate::oidc::end_session::EndSessionError> for PageError {
    fn from(err: crate::oidc::end_session::EndSessionError) -> Self {
        use crate::oidc::end_session::EndSessionError;
        match err {
            EndSessionError::Refused(message) => PageError::bad_request("Sign-out request refused", message),
            EndSessionError::Store(cause) => cause.into(),
        }
    }
}
