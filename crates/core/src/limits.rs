//! Limits shared by the rules that check them, the configuration that bounds them and the API
//! document that declares them: one place, so they cannot drift apart.

/// The longest TTL a session, a memory or an API key may be given: ten (leap) years, in seconds.
pub const MAX_TTL_SECONDS: i64 = 10 * 366 * 24 * 3600;
/// The longest fact of a memory, in characters.
pub const MAX_FACT_CHARS: usize = 4000;
/// The longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 4000;
/// The longest topic name, in characters.
pub const MAX_TOPIC_CHARS: usize = 128;
/// The most results one search returns.
pub const MAX_TOP_K: u32 = 100;
/// The longest half-life a search's recency weight may be given: a century, in days.
pub const MAX_HALF_LIFE_DAYS: f64 = 36_525.0;
/// The longest id, name or scope value, in characters.
pub const MAX_ID_CHARS: usize = 256;
/// The most pairs a scope holds.
pub const MAX_SCOPE_KEYS: usize = 32;
/// The longest scope key, in characters.
pub const MAX_SCOPE_KEY_CHARS: usize = 64;
/// The longest API key name, and org id of a key, in characters.
pub const MAX_KEY_NAME_CHARS: usize = 128;
/// The highest rate a key may be given, in requests per second.
pub const MAX_RATE_PER_SECOND: u32 = 100_000;
/// The most events one append may carry (`MAX_EVENTS_PER_REQUEST` at most this): each binds 14
/// SQL parameters, and SQLite allows 32,766 per statement.
pub const MAX_EVENTS_PER_REQUEST: usize = 1000;
/// The most events a compaction policy may keep verbatim.
pub const MAX_KEEP_RECENT_EVENTS: u32 = 10_000;
/// The largest token budget a context request may ask for (a million-token window).
pub const MAX_CONTEXT_BUDGET_TOKENS: u32 = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten years: long enough for any real TTL, short enough that no timestamp overflows.
    #[test]
    fn the_ttl_ceiling_is_ten_years() {
        assert_eq!(MAX_TTL_SECONDS, 316_224_000);
    }
}
