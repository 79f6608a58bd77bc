//! An alarm schedule as stored: which trigger it fires, when, and with what payload (the
//! `/whisk.system/alarms` feeds' parameters, as OpenWhisk's alarms provider keeps them).
//! The times are kept as given and interpreted by `crate::alarms::schedule`; this module
//! holds data only.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::EntityName;

/// Which feed made the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlarmFeed {
    /// `alarms/alarm`: a cron pattern (5 fields, or 6 with seconds first).
    Alarm,
    /// `alarms/once`: one date.
    Once,
    /// `alarms/interval`: every `minutes`, from `startDate`.
    Interval,
}

impl AlarmFeed {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Alarm => "alarm",
            Self::Once => "once",
            Self::Interval => "interval",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "alarm" => Some(Self::Alarm),
            "once" => Some(Self::Once),
            "interval" => Some(Self::Interval),
            _ => None,
        }
    }
}

/// One trigger's schedule. Replicated to every controller of a cluster as an entity with
/// revisions; the progress (last tick handled, fires counted) is each host's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmSpec {
    pub namespace: EntityName,
    pub trigger: EntityName,
    pub feed: AlarmFeed,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// `once`: milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<u64>,
    /// What each fire posts (the feed's `trigger_payload`).
    #[serde(default)]
    pub payload: Value,
    /// Milliseconds since the epoch; no tick before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<u64>,
    /// Milliseconds since the epoch; no tick at or after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_date: Option<u64>,
    /// Fires before the schedule ends; -1: no limit (the provider's default).
    pub max_triggers: i64,
    /// `once`: `false`, `true` (delete the trigger after its fire) or `rules` (its rules too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_after_fire: Option<String>,
    /// `false` while paused (PAUSE) or ended (max triggers reached).
    pub active: bool,
    /// When `active` last changed, milliseconds since the epoch.
    pub date_changed: u64,
    /// As an action's ([`super::revision`]).
    pub revision: u64,
}

impl AlarmSpec {
    /// The store key, the trigger's: `namespace/trigger`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.trigger)
    }
}

/// What one host did with a schedule: the last tick it handled (fired here or seen claimed
/// elsewhere) and how many ticks were fired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlarmProgress {
    /// Milliseconds since the epoch of the last tick handled; 0: none yet.
    pub last_tick: u64,
    pub fired: u64,
}
