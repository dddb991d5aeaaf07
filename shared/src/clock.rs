//! Wall-clock time in the one unit the agent stores: milliseconds since the Unix epoch.

/// Now, in epoch milliseconds (0 if the system clock is before 1970, which only a broken host has).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
