//! The `/whisk.system/alarms` feed actions, run natively: `alarm`, `once` and `interval`
//! invoked with OpenWhisk's feed lifecycle (`lifecycleEvent` CREATE, READ, UPDATE, DELETE,
//! PAUSE, UNPAUSE, with `triggerName` and `authKey`), validated with the alarms provider's
//! messages, stored as durable schedules. The answer is the feed action's result as the
//! provider gives it: `{"status": "success"}`, READ's `{config, status}`, or `{"error"}`.
//!
//! Only the trigger's own namespace may drive its feed: the caller's, and the `authKey`
//! (when given) must be a key of it; the key itself is never stored (fires run as the
//! trigger's namespace).

use serde_json::{json, Map, Value};

use super::schedule::{display, next_tick, parse_date, Cron};
use crate::controller::Controller;
use crate::model::{now_millis, AlarmFeed, AlarmSpec, EntityName, Identity};

/// Where a feed answer failed: the provider's message.
type FeedResult = Result<Value, String>;

const SUCCESS: fn() -> Value = || json!({ "status": "success" });

/// Runs one lifecycle event of `feed` for `caller`.
pub async fn lifecycle(
    c: &Controller,
    caller: &Identity,
    feed: AlarmFeed,
    params: &Map<String, Value>,
) -> FeedResult {
    let event = params.get("lifecycleEvent").and_then(Value::as_str).unwrap_or("");
    let trigger = trigger_of(c, caller, params, event == "DELETE")?;
    let ns = caller.namespace.clone();
    let store = c.store().clone();
    let existing = store.get_alarm(&ns, &trigger).map_err(|e| e.to_string())?;
    let not_found = || "could not find the trigger in the database".to_owned();
    let write = |spec: AlarmSpec, reset: bool| {
        let store = store.clone();
        async move {
            tokio::task::spawn_blocking(move || store.put_alarm(&spec, reset))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        }
    };
    match event {
        "CREATE" => {
            let spec = create(feed, ns, trigger, params, now_millis())?;
            write(spec, true).await?;
            Ok(SUCCESS())
        }
        "READ" => existing.map(|s| read(&s)).ok_or_else(not_found),
        "UPDATE" => {
            let spec = update(existing.ok_or_else(not_found)?, params, now_millis())?;
            write(spec, false).await?;
            Ok(SUCCESS())
        }
        "PAUSE" | "UNPAUSE" => {
            let mut spec = existing.ok_or_else(not_found)?;
            spec.active = event == "UNPAUSE";
            spec.date_changed = now_millis();
            write(spec, false).await?;
            Ok(SUCCESS())
        }
        "DELETE" => {
            let gone = tokio::task::spawn_blocking(move || store.delete_alarm(&ns, &trigger))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            gone.map(|_| SUCCESS()).ok_or_else(not_found)
        }
        _ => Err("unsupported lifecycleEvent".into()),
    }
}

/// The trigger named by `triggerName` (`/ns/name`, `/_/name` or `name`): of the caller's
/// namespace, existing (but for DELETE), and `authKey` (when given) a key of it.
fn trigger_of(
    c: &Controller,
    caller: &Identity,
    params: &Map<String, Value>,
    deleting: bool,
) -> Result<EntityName, String> {
    let auth_failed = || "Trigger authentication request failed.".to_owned();
    let Some(qname) = params.get("triggerName").and_then(Value::as_str) else {
        return Err("no trigger name parameter was provided".into());
    };
    let (ns, name) = match qname.strip_prefix('/').and_then(|q| q.split_once('/')) {
        Some((ns, name)) => (ns, name),
        None => ("_", qname),
    };
    if ns != "_" && ns != caller.namespace.as_str() {
        return Err(auth_failed());
    }
    if let Some(key) = params.get("authKey").and_then(Value::as_str) {
        let owner = c.authenticate(key).map_err(|e| e.to_string())?;
        if owner.map(|o| o.namespace) != Some(caller.namespace.clone()) {
            return Err(auth_failed());
        }
    }
    let name = EntityName::parse(name).map_err(|_| auth_failed())?;
    let exists = c.store().get_trigger(&caller.namespace, &name).map_err(|e| e.to_string())?;
    if exists.is_none() && !deleting {
        return Err(auth_failed());
    }
    Ok(name)
}

/// `trigger_payload` as the provider takes it: an object, or a string wrapped as
/// `{"payload": s}`.
fn payload(params: &Map<String, Value>) -> Value {
    match params.get("trigger_payload") {
        Some(Value::String(s)) => json!({ "payload": s }),
        Some(v @ Value::Object(_)) => v.clone(),
        _ => json!({}),
    }
}

/// A date parameter that must be in the future (and after `after`, when given).
fn future_date(v: &Value, param: &str, now: u64, after: Option<u64>) -> Result<u64, String> {
    let ms = parse_date(v, param)?;
    if ms <= now {
        return Err(format!("{param} parameter '{}' must be in the future", display(v)));
    }
    if let Some(start) = after.filter(|s| ms <= *s) {
        return Err(format!(
            "{param} parameter '{}' must be greater than the startDate parameter '{start}'",
            display(v)
        ));
    }
    Ok(ms)
}

fn minutes(v: &Value) -> Result<u64, String> {
    let n = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n.fract() == 0.0 && n > 0.0 => Ok(n as u64),
        Some(n) if n.fract() == 0.0 => {
            Err("the minutes parameter must be an integer greater than zero".into())
        }
        _ => Err("the minutes parameter must be an integer".into()),
    }
}

fn check_timezone(params: &Map<String, Value>) -> Result<(), String> {
    match params.get("timezone").and_then(Value::as_str) {
        None | Some("UTC" | "Etc/UTC" | "GMT" | "") => Ok(()),
        Some(_) => Err("Invalid timezone.".into()),
    }
}

/// A new schedule from CREATE's parameters (the provider's checks, in its order).
fn create(
    feed: AlarmFeed,
    namespace: EntityName,
    trigger: EntityName,
    params: &Map<String, Value>,
    now: u64,
) -> Result<AlarmSpec, String> {
    let mut spec = AlarmSpec {
        namespace,
        trigger,
        feed,
        cron: None,
        date: None,
        minutes: None,
        payload: payload(params),
        start_date: None,
        stop_date: None,
        max_triggers: params.get("maxTriggers").and_then(Value::as_i64).unwrap_or(-1),
        delete_after_fire: None,
        active: true,
        date_changed: now,
        revision: 0,
    };
    if feed == AlarmFeed::Once {
        let date =
            params.get("date").ok_or("alarms once trigger feed is missing the date parameter")?;
        spec.date = Some(future_date(date, "date", now, None)?);
        spec.delete_after_fire = delete_after_fire(params)?;
        return Ok(spec);
    }
    if feed == AlarmFeed::Interval {
        let m = params
            .get("minutes")
            .ok_or("interval trigger feed is missing the minutes parameter")?;
        spec.minutes = Some(minutes(m)?);
    } else {
        let cron = params
            .get("cron")
            .and_then(Value::as_str)
            .ok_or("alarms trigger feed is missing the cron parameter")?;
        check_timezone(params)?;
        Cron::parse(cron)?;
        let limited = params.get("limitCronFields").is_some_and(|v| v == true);
        if limited && cron.split_whitespace().count() == 6 {
            return Err(
                "cron pattern is limited to 5 fields with 1 minute as the finest granularity"
                    .into(),
            );
        }
        spec.cron = Some(cron.to_owned());
    }
    spec.start_date = match params.get("startDate") {
        Some(v) => Some(future_date(v, "startDate", now, None)?),
        // The provider starts an interval 30 seconds from now when no start date is given.
        None if feed == AlarmFeed::Interval => Some(now + 30_000),
        None => None,
    };
    match (params.get("maxTriggers"), params.get("stopDate")) {
        (Some(_), Some(_)) if feed == AlarmFeed::Interval => {
            return Err("maxTriggers is not supported for the interval trigger feed".into())
        }
        (Some(_), Some(_)) => {
            return Err("maxTriggers is not allowed when the stopDate parameter is specified".into())
        }
        (_, Some(v)) => {
            spec.stop_date = Some(future_date(v, "stopDate", now, spec.start_date)?);
            if next_tick(&spec, now).is_none() {
                return Err(
                    "the first scheduled trigger fire is not until after the stop date".into()
                );
            }
        }
        _ => {}
    }
    Ok(spec)
}

fn delete_after_fire(params: &Map<String, Value>) -> Result<Option<String>, String> {
    let Some(v) = params.get("deleteAfterFire") else { return Ok(None) };
    let s = display(v).trim().to_lowercase();
    if ["false", "true", "rules"].contains(&s.as_str()) {
        Ok(Some(s))
    } else {
        Err("deleteAfterFire parameter must be one of [false, true, rules].".into())
    }
}

/// UPDATE: the parameters the provider lets change.
fn update(mut spec: AlarmSpec, params: &Map<String, Value>, now: u64) -> Result<AlarmSpec, String> {
    let mut changed = false;
    if params.contains_key("trigger_payload") {
        spec.payload = payload(params);
        changed = true;
    }
    match spec.feed {
        AlarmFeed::Once => {
            if let Some(d) = params.get("date") {
                spec.date = Some(future_date(d, "date", now, None)?);
                changed = true;
            }
            if params.contains_key("deleteAfterFire") {
                spec.delete_after_fire = delete_after_fire(params)?;
                changed = true;
            }
        }
        AlarmFeed::Interval | AlarmFeed::Alarm => {
            if let Some(m) = params.get("minutes").filter(|_| spec.feed == AlarmFeed::Interval) {
                spec.minutes = Some(minutes(m)?);
                changed = true;
            }
            if let Some(cron) = params.get("cron").filter(|_| spec.feed == AlarmFeed::Alarm) {
                let cron = cron.as_str().unwrap_or_default();
                check_timezone(params)?;
                Cron::parse(cron)?;
                spec.cron = Some(cron.to_owned());
                changed = true;
            }
            if let Some(v) = params.get("startDate") {
                spec.start_date = Some(future_date(v, "startDate", now, None)?);
                changed = true;
            }
            if let Some(v) = params.get("stopDate") {
                spec.stop_date = Some(future_date(v, "stopDate", now, spec.start_date)?);
                changed = true;
            }
        }
    }
    if !changed {
        return Err("no updatable parameters were specified".into());
    }
    Ok(spec)
}

fn iso(ms: u64) -> Value {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
        .map(|d| json!(d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
        .unwrap_or(Value::Null)
}

/// READ: the provider's `{config, status}`.
fn read(s: &AlarmSpec) -> Value {
    let mut config = json!({
        "name": s.trigger,
        "namespace": s.namespace,
        "payload": s.payload,
        "strict": false,
    });
    match s.feed {
        AlarmFeed::Once => {
            config["date"] = s.date.map_or(Value::Null, iso);
            config["deleteAfterFire"] = json!(s.delete_after_fire.as_deref().unwrap_or("false"));
        }
        AlarmFeed::Interval | AlarmFeed::Alarm => {
            config["startDate"] = s.start_date.map_or(Value::Null, iso);
            config["stopDate"] = s.stop_date.map_or(Value::Null, iso);
            match s.feed {
                AlarmFeed::Interval => config["minutes"] = json!(s.minutes),
                _ => {
                    config["cron"] = json!(s.cron);
                    config["timezone"] = json!("UTC");
                }
            }
        }
    }
    if s.max_triggers >= 0 {
        config["maxTriggers"] = json!(s.max_triggers);
    }
    json!({
        "config": config,
        "status": {
            "active": s.active,
            "dateChanged": s.date_changed,
            "dateChangedISO": iso(s.date_changed),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn create_checks_as_the_provider_does() {
        let n = |s: &str| EntityName::parse(s).unwrap();
        let mk = |feed, v| create(feed, n("guest"), n("t"), &p(v), 1_000);
        assert_eq!(
            mk(AlarmFeed::Alarm, json!({})).unwrap_err(),
            "alarms trigger feed is missing the cron parameter"
        );
        assert_eq!(
            mk(AlarmFeed::Alarm, json!({"cron": "nope"})).unwrap_err(),
            "cron pattern 'nope' is not valid"
        );
        let s = mk(
            AlarmFeed::Alarm,
            json!({"cron": "*/2 * * * * *", "trigger_payload": "hi", "maxTriggers": 3}),
        )
        .unwrap();
        assert_eq!((s.payload.clone(), s.max_triggers), (json!({"payload": "hi"}), 3));
        assert!(mk(
            AlarmFeed::Alarm,
            json!({"cron": "* * * * *", "maxTriggers": 1, "stopDate": 99_999_999})
        )
        .unwrap_err()
        .contains("maxTriggers is not allowed"));
        assert_eq!(
            mk(AlarmFeed::Once, json!({"date": 10})).unwrap_err(),
            "date parameter '10' must be in the future"
        );
        assert_eq!(
            mk(AlarmFeed::Interval, json!({"minutes": 0})).unwrap_err(),
            "the minutes parameter must be an integer greater than zero"
        );
        let i = mk(AlarmFeed::Interval, json!({"minutes": "2"})).unwrap();
        assert_eq!((i.minutes, i.start_date), (Some(2), Some(31_000)));
        let r = read(&s);
        assert_eq!(r["config"]["cron"], "*/2 * * * * *");
        assert_eq!(r["status"]["active"], true);
        let u = update(s, &p(json!({"trigger_payload": {"a": 1}})), 2_000).unwrap();
        assert_eq!(u.payload, json!({"a": 1}));
        assert_eq!(
            update(u, &p(json!({})), 2_000).unwrap_err(),
            "no updatable parameters were specified"
        );
    }
}
