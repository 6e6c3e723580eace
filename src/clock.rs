//! The time everything is stamped with: Unix seconds. Its own module so that every layer can
//! use it without depending on the application state.

/// Unix time in seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
