//! Relative dates made absolute: "last month", said on 6 December 2026, is "in November 2026".
//!
//! A memory outlives the conversation it came from, so "yesterday" in a fact would be wrong the
//! day after. The expressions resolved are the unambiguous ones: days (yesterday, today,
//! tomorrow, in N days, N days ago), weeks, months and years (last, this, next, in N, N ago).
//! A bare weekday ("on Friday") is left as said: whether it is the last or the next one depends
//! on the tense of what is around it.

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, Utc, Weekday};

use super::words::bare;

/// `fact` with each relative date resolved against `said_at`, the time it was said.
pub fn resolve_dates(fact: &str, said_at: DateTime<Utc>) -> String {
    let today = said_at.date_naive();
    let tokens: Vec<&str> = fact.split_whitespace().collect();
    let words: Vec<String> = tokens.iter().map(|token| bare(token)).collect();
    let mut out: Vec<String> = Vec::with_capacity(tokens.len());
    let mut idx = 0;
    while idx < tokens.len() {
        match resolve_at(&words[idx..], today) {
            Some((len, resolved)) => {
                // The last token replaced keeps its trailing punctuation ("yesterday," or "ago.").
                let last = tokens[idx + len - 1];
                let trailing = &last[last.trim_end_matches(|ch: char| !ch.is_alphanumeric()).len()..];
                // "on yesterday" would read badly: a preposition before the phrase goes.
                if matches!(out.last().map(|word| word.to_lowercase()).as_deref(), Some("on" | "in")) {
                    out.pop();
                }
                out.push(format!("{resolved}{trailing}"));
                idx += len;
            }
            None => {
                out.push(tokens[idx].to_owned());
                idx += 1;
            }
        }
    }
    out.join(" ")
}

/// The relative date at the start of `words` (lowercase, bare): how many words it takes and
/// what it reads as.
fn resolve_at(words: &[String], today: NaiveDate) -> Option<(usize, String)> {
    let word = |idx: usize| words.get(idx).map_or("", String::as_str);
    let on_day = |date: NaiveDate| format!("on {}", day(date));
    match (word(0), word(1)) {
        ("yesterday", _) => return Some((1, on_day(today - Duration::days(1)))),
        ("today", _) => return Some((1, on_day(today))),
        ("tomorrow", _) => return Some((1, on_day(today + Duration::days(1)))),
        ("the", "day") if word(2) == "before" && word(3) == "yesterday" => {
            return Some((4, on_day(today - Duration::days(2))));
        }
        ("the", "day") if word(2) == "after" && word(3) == "tomorrow" => {
            return Some((4, on_day(today + Duration::days(2))));
        }
        ("last", "night") => return Some((2, on_day(today - Duration::days(1)))),
        ("last" | "this" | "next", unit) => {
            let step = match word(0) {
                "last" => -1,
                "this" => 0,
                _ => 1,
            };
            return shifted(unit, step, today).map(|resolved| (2, resolved));
        }
        // "in two weeks", "in 3 days".
        ("in", amount) => {
            let amount = number(amount)?;
            return counted(word(2), amount, today).map(|resolved| (3, resolved));
        }
        // "two weeks ago", "a month ago".
        (amount, unit) if word(2) == "ago" => {
            let amount = number(amount)?;
            return counted(unit, -amount, today).map(|resolved| (3, resolved));
        }
        _ => {}
    }
    None
}

/// The date `step` units from `today`, in the words of its unit's precision: a day, a week, a
/// month, a year.
fn shifted(unit: &str, step: i64, today: NaiveDate) -> Option<String> {
    match unit {
        "day" | "days" => Some(format!("on {}", day(today + Duration::days(step)))),
        "week" | "weeks" => {
            let monday = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
            Some(format!("in the week of {}", day(monday + Duration::weeks(step))))
        }
        "month" | "months" => {
            let first = today.with_day(1)?;
            let month = match step {
                0.. => first.checked_add_months(Months::new(u32::try_from(step).ok()?))?,
                _ => first.checked_sub_months(Months::new(u32::try_from(-step).ok()?))?,
            };
            Some(format!("in {} {}", month_name(month.month()), month.year()))
        }
        "year" | "years" => Some(format!("in {}", i64::from(today.year()) + step)),
        // "last Friday", "next Monday": the weekday before or after today.
        weekday => {
            let weekday: Weekday = weekday.parse().ok()?;
            let date = match step {
                ..0 => (1..=7).map(|back| today - Duration::days(back)).find(|date| date.weekday() == weekday)?,
                0 => return None,
                _ => (1..=7).map(|ahead| today + Duration::days(ahead)).find(|date| date.weekday() == weekday)?,
            };
            Some(format!("on {}", day(date)))
        }
    }
}

/// `amount` units from today ("in two weeks", "three days ago"): weeks counted from today are
/// approximate, around a day; the other units read as [`shifted`] does.
fn counted(unit: &str, amount: i64, today: NaiveDate) -> Option<String> {
    match unit {
        "week" | "weeks" => Some(format!("around {}", day(today + Duration::weeks(amount)))),
        "day" | "days" | "month" | "months" | "year" | "years" => shifted(unit, amount, today),
        _ => None,
    }
}

fn day(date: NaiveDate) -> String {
    format!("{} {} {}", date.day(), month_name(date.month()), date.year())
}

fn month_name(month: u32) -> &'static str {
    const NAMES: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    NAMES[(month as usize).clamp(1, 12) - 1]
}

/// "a", "one" to "twelve", or digits, up to 1,000.
fn number(word: &str) -> Option<i64> {
    const WORDS: [&str; 12] =
        ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"];
    match word {
        "a" | "an" => Some(1),
        "couple" => None,
        _ => WORDS
            .iter()
            .position(|name| *name == word)
            .map(|idx| idx as i64 + 1)
            .or_else(|| word.parse::<i64>().ok().filter(|amount| (1..=1000).contains(amount))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(fact: &str, expected: &str) {
        // A Sunday.
        let said_at = "2026-12-06T10:00:00Z".parse().unwrap();
        assert_eq!(resolve_dates(fact, said_at), expected, "{fact:?}");
    }

    #[test]
    fn resolves_days_weeks_months_and_years() {
        check("User went to the dentist yesterday", "User went to the dentist on 5 December 2026");
        check("User has a dentist appointment tomorrow", "User has a dentist appointment on 7 December 2026");
        check("User moved to Hamburg last month", "User moved to Hamburg in November 2026");
        check("User is starting a new job next month.", "User is starting a new job in January 2027.");
        check("User ran a marathon last year", "User ran a marathon in 2025");
        check("User is flying to Lisbon in two weeks", "User is flying to Lisbon around 20 December 2026");
        check("User adopted a cat three months ago", "User adopted a cat in September 2026");
        check("User started yoga a week ago", "User started yoga around 29 November 2026");
        check("User slept badly last night", "User slept badly on 5 December 2026");
        check("User is moving in a month", "User is moving in January 2027");
        check("User visited Rome 10 days ago, with friends", "User visited Rome on 26 November 2026, with friends");
        check("User went to a concert last Friday", "User went to a concert on 4 December 2026");
        check("User is seeing a doctor next Monday", "User is seeing a doctor on 7 December 2026");
        check("User's exam is in 3 days", "User's exam is on 9 December 2026");
        check("User's exam is next week", "User's exam is in the week of 7 December 2026");
        check("User graduated the day before yesterday", "User graduated on 4 December 2026");
    }

    #[test]
    fn leaves_what_is_not_a_relative_date() {
        check("User's dentist appointment is on Friday", "User's dentist appointment is on Friday");
        check("User lives in Berlin", "User lives in Berlin");
        check("User is planning a trip to Lisbon in October", "User is planning a trip to Lisbon in October");
        check("User likes this year's songs", "User likes this year's songs");
        check("User works in two shifts", "User works in two shifts");
        check("User has a couple of days ago", "User has a couple of days ago");
    }
}
