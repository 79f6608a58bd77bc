//! When an alarm's ticks fall: the cron pattern, the interval or the date of a schedule,
//! bounded by its start and stop dates, in UTC milliseconds. Pure: no clock, no store.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::model::{AlarmFeed, AlarmSpec};

/// A parsed cron pattern as OpenWhisk's alarms provider (node `cron`) reads it: five fields
/// (minute first, at second 0) or six (second first); day of week 0-7 with Sunday 0 or 7.
#[derive(Debug, Clone)]
pub struct Cron(cron::Schedule);

impl Cron {
    pub fn parse(pattern: &str) -> Result<Cron, String> {
        let invalid = || format!("cron pattern '{pattern}' is not valid");
        let mut fields: Vec<String> = pattern.split_whitespace().map(str::to_owned).collect();
        match fields.len() {
            5 => fields.insert(0, "0".into()),
            6 => {}
            _ => return Err(invalid()),
        }
        fields[5] = unix_days_of_week(&fields[5]);
        cron::Schedule::from_str(&fields.join(" ")).map(Cron).map_err(|_| invalid())
    }

    /// The first tick strictly after `after_ms`.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let after = DateTime::<Utc>::from_timestamp_millis(i64::try_from(after_ms).ok()?)?;
        let next = self.0.after(&after).next()?;
        u64::try_from(next.timestamp_millis()).ok()
    }
}

/// Unix cron's days of the week (0-7, Sunday 0 or 7) as the `cron` crate's (1-7, Sunday 1);
/// names and `*` pass unchanged.
fn unix_days_of_week(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut number = String::new();
    let mut after_slash = false;
    let flush = |number: &mut String, out: &mut String, step: bool| {
        if number.is_empty() {
            return;
        }
        match number.parse::<u32>() {
            Ok(n) if !step => out.push_str(&(if n == 7 { 1 } else { n + 1 }).to_string()),
            _ => out.push_str(number),
        }
        number.clear();
    };
    for ch in field.chars() {
        if ch.is_ascii_digit() {
            number.push(ch);
            continue;
        }
        flush(&mut number, &mut out, after_slash);
        after_slash = ch == '/';
        out.push(ch);
    }
    flush(&mut number, &mut out, after_slash);
    out
}

/// A date as the alarms feeds take it: an ISO 8601 / RFC 3339 string, or milliseconds since
/// the epoch (number or string).
pub fn parse_date(v: &Value, param: &str) -> Result<u64, String> {
    let invalid = || format!("{param} parameter '{}' is not a valid Date", display(v));
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(invalid),
        Value::String(s) => {
            if let Ok(ms) = s.trim().parse::<u64>() {
                return Ok(ms);
            }
            let parsed = DateTime::parse_from_rfc3339(s.trim())
                .map(|d| d.timestamp_millis())
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S%.f")
                        .map(|d| d.and_utc().timestamp_millis())
                })
                .map_err(|_| invalid())?;
            u64::try_from(parsed).map_err(|_| invalid())
        }
        _ => Err(invalid()),
    }
}

/// A parameter's value as OpenWhisk's messages quote it.
pub fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The first tick of `spec` strictly after `after_ms` (and at or after its start date,
/// before its stop date); `None` when there is none.
pub fn next_tick(spec: &AlarmSpec, after_ms: u64) -> Option<u64> {
    let start = spec.start_date.unwrap_or(0);
    let tick = match spec.feed {
        AlarmFeed::Alarm => {
            let cron = Cron::parse(spec.cron.as_deref()?).ok()?;
            cron.next_after(after_ms.max(start.saturating_sub(1)))?
        }
        AlarmFeed::Once => spec.date.filter(|d| *d > after_ms)?,
        AlarmFeed::Interval => {
            let every = spec.minutes?.checked_mul(60_000).filter(|e| *e > 0)?;
            if after_ms < start {
                start
            } else {
                start + ((after_ms - start) / every + 1) * every
            }
        }
    };
    match spec.stop_date {
        Some(stop) if tick >= stop => None,
        _ => Some(tick),
    }
}

/// The latest tick in `(after_ms, upto_ms]`: the one to fire now; the ticks before it in
/// that window are skipped (a scheduler that fell behind fires once, not in a burst).
pub fn due_tick(spec: &AlarmSpec, after_ms: u64, upto_ms: u64) -> Option<u64> {
    let mut due = None;
    let mut at = after_ms;
    while let Some(t) = next_tick(spec, at).filter(|t| *t <= upto_ms) {
        due = Some(t);
        at = t;
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EntityName;
    use serde_json::json;

    fn spec(feed: AlarmFeed) -> AlarmSpec {
        AlarmSpec {
            namespace: EntityName::parse("guest").unwrap(),
            trigger: EntityName::parse("t").unwrap(),
            feed,
            cron: None,
            date: None,
            minutes: None,
            payload: json!({}),
            start_date: None,
            stop_date: None,
            max_triggers: -1,
            delete_after_fire: None,
            active: true,
            date_changed: 0,
            revision: 1,
        }
    }

    #[test]
    fn five_and_six_field_patterns() {
        let every2 = Cron::parse("*/2 * * * * *").unwrap();
        assert_eq!(every2.next_after(1_000), Some(2_000));
        assert_eq!(every2.next_after(2_000), Some(4_000));
        let minutely = Cron::parse("* * * * *").unwrap();
        assert_eq!(minutely.next_after(1_000), Some(60_000));
        assert!(Cron::parse("* * *").is_err());
        assert_eq!(Cron::parse("x * * * *").unwrap_err(), "cron pattern 'x * * * *' is not valid");
        // 1970-01-01 was a Thursday (4): Sunday is 0 or 7, as in unix cron.
        let sunday = Cron::parse("0 0 * * 0").unwrap().next_after(0).unwrap();
        assert_eq!(sunday, 3 * 86_400_000);
        assert_eq!(Cron::parse("0 0 * * 7").unwrap().next_after(0), Some(sunday));
        assert_eq!(unix_days_of_week("1-5,*/2"), "2-6,*/2");
    }

    #[test]
    fn bounds_interval_once_and_due() {
        let mut s = spec(AlarmFeed::Alarm);
        s.cron = Some("*/2 * * * * *".into());
        s.start_date = Some(10_000);
        s.stop_date = Some(20_000);
        assert_eq!(next_tick(&s, 0), Some(10_000));
        assert_eq!(next_tick(&s, 18_000), None, "20 s is the stop date: no tick at it");
        assert_eq!(due_tick(&s, 10_000, 15_500), Some(14_000), "the latest, once");
        assert_eq!(due_tick(&s, 14_000, 15_500), None);
        let mut i = spec(AlarmFeed::Interval);
        i.minutes = Some(1);
        i.start_date = Some(5_000);
        assert_eq!(next_tick(&i, 0), Some(5_000));
        assert_eq!(next_tick(&i, 5_000), Some(65_000));
        let mut o = spec(AlarmFeed::Once);
        o.date = Some(7_000);
        assert_eq!((next_tick(&o, 0), next_tick(&o, 7_000)), (Some(7_000), None));
        assert_eq!(parse_date(&json!("1970-01-01T00:00:10.000Z"), "date"), Ok(10_000));
        assert_eq!(parse_date(&json!(12), "date"), Ok(12));
        assert!(parse_date(&json!("soon"), "date").unwrap_err().contains("is not a valid Date"));
    }
}
