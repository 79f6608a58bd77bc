//! Alarm schedules: `ns/trigger` -> [`AlarmSpec`] (JSON) in `alarms`, replicated to every
//! controller; and this host's progress on each (`alarm_tick/ns/trigger` in `meta`: the last
//! tick handled and the fires counted, two big-endian u64), never replicated. The progress
//! is committed before a tick fires, so a restart never fires a tick twice.

use super::codec::be_u64;
use super::error::lmdb;
use super::named::ALARMS;
use super::{Store, StoreError};
use crate::model::{AlarmProgress, AlarmSpec, EntityName};

const PROGRESS: &str = "alarm_tick/";

impl Store {
    /// Stores a schedule (a new revision of it); `reset` forgets this host's progress on a
    /// previous one of the same trigger (a CREATE), otherwise it is kept (UPDATE, PAUSE), so
    /// a tick already handled is never handled again.
    pub fn put_alarm(&self, spec: &AlarmSpec, reset: bool) -> Result<AlarmSpec, StoreError> {
        let key = spec.key();
        let mut wtxn = self.write_txn()?;
        let existing: Option<AlarmSpec> = self.named_in(&wtxn, &ALARMS, &key)?;
        let mut spec = spec.clone();
        spec.revision =
            self.named_revision_in(&mut wtxn, &ALARMS, &key, existing.map(|a| a.revision))?;
        let fed = self.put_named_in(&mut wtxn, &ALARMS, &key, &spec)?;
        if reset {
            let last_tick = self.progress_in(&wtxn, &key)?.last_tick;
            self.put_progress_in(&mut wtxn, &key, AlarmProgress { last_tick, fired: 0 })?;
        }
        self.commit_named(wtxn, &ALARMS, &[fed])?;
        tracing::info!(alarm = %key, feed = spec.feed.as_str(), revision = spec.revision, "alarm stored");
        Ok(spec)
    }

    pub fn get_alarm(
        &self,
        ns: &EntityName,
        trigger: &EntityName,
    ) -> Result<Option<AlarmSpec>, StoreError> {
        let rtxn = self.read_txn()?;
        self.named_in(&rtxn, &ALARMS, &format!("{ns}/{trigger}"))
    }

    /// Every schedule of every namespace.
    pub fn list_alarms(&self) -> Result<Vec<AlarmSpec>, StoreError> {
        self.list_named(&ALARMS, None, 0, usize::MAX)
    }

    /// Deletes a schedule and this host's progress. `None`: not found.
    pub fn delete_alarm(
        &self,
        ns: &EntityName,
        trigger: &EntityName,
    ) -> Result<Option<AlarmSpec>, StoreError> {
        let key = format!("{ns}/{trigger}");
        let mut wtxn = self.write_txn()?;
        let Some(spec) = self.named_in::<AlarmSpec>(&wtxn, &ALARMS, &key)? else {
            return Ok(None);
        };
        let fed = self.remove_named_in(&mut wtxn, &ALARMS, &key, spec.revision)?;
        let pk = format!("{PROGRESS}{key}");
        self.dbs().meta.delete(&mut wtxn, pk.as_bytes()).map_err(lmdb("delete", "meta"))?;
        self.commit_named(wtxn, &ALARMS, &[fed])?;
        tracing::info!(alarm = %key, "alarm deleted");
        Ok(Some(spec))
    }

    fn progress_in(&self, txn: &heed::RoTxn, key: &str) -> Result<AlarmProgress, StoreError> {
        let pk = format!("{PROGRESS}{key}");
        match self.dbs().meta.get(txn, pk.as_bytes()).map_err(lmdb("get", "meta"))? {
            Some(b) => Ok(AlarmProgress {
                last_tick: be_u64("meta", pk.as_bytes(), b)?,
                fired: be_u64("meta", pk.as_bytes(), b.get(8..).unwrap_or(&[]))?,
            }),
            None => Ok(AlarmProgress::default()),
        }
    }

    fn put_progress_in(
        &self,
        wtxn: &mut heed::RwTxn,
        key: &str,
        p: AlarmProgress,
    ) -> Result<(), StoreError> {
        let pk = format!("{PROGRESS}{key}");
        let mut v = p.last_tick.to_be_bytes().to_vec();
        v.extend_from_slice(&p.fired.to_be_bytes());
        self.dbs().meta.put(wtxn, pk.as_bytes(), &v).map_err(lmdb("put", "meta"))
    }

    /// This host's progress on schedule `key` (`ns/trigger`).
    pub fn alarm_progress(&self, key: &str) -> Result<AlarmProgress, StoreError> {
        let rtxn = self.read_txn()?;
        self.progress_in(&rtxn, key)
    }

    /// Records that the tick at `tick` ms was handled (and fired here or elsewhere, counted in
    /// `fired`), unless a later one already was: returns false then, and the caller must not
    /// fire it. One transaction, committed before the fire.
    pub fn advance_alarm(&self, key: &str, tick: u64, fired: bool) -> Result<bool, StoreError> {
        let mut wtxn = self.write_txn()?;
        let p = self.progress_in(&wtxn, key)?;
        if p.last_tick >= tick {
            return Ok(false);
        }
        let next = AlarmProgress { last_tick: tick, fired: p.fired + u64::from(fired) };
        self.put_progress_in(&mut wtxn, key, next)?;
        wtxn.commit().map_err(lmdb("commit", "meta"))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AlarmFeed;
    use crate::store::test_util::temp_store;

    #[test]
    fn progress_only_moves_forward_and_survives_updates() {
        let (_d, s) = temp_store();
        let n = |x: &str| EntityName::parse(x).unwrap();
        let spec = AlarmSpec {
            namespace: n("guest"),
            trigger: n("t"),
            feed: AlarmFeed::Alarm,
            cron: Some("*/2 * * * * *".into()),
            date: None,
            minutes: None,
            payload: serde_json::json!({}),
            start_date: None,
            stop_date: None,
            max_triggers: -1,
            delete_after_fire: None,
            active: true,
            date_changed: 0,
            revision: 0,
        };
        let stored = s.put_alarm(&spec, true).unwrap();
        assert_eq!(stored.revision, 1);
        assert!(s.advance_alarm("guest/t", 2000, true).unwrap());
        assert!(!s.advance_alarm("guest/t", 2000, true).unwrap(), "a tick is handled once");
        assert!(s.advance_alarm("guest/t", 4000, false).unwrap());
        assert_eq!(
            s.alarm_progress("guest/t").unwrap(),
            AlarmProgress { last_tick: 4000, fired: 1 }
        );
        s.put_alarm(&spec, false).unwrap();
        assert_eq!(s.alarm_progress("guest/t").unwrap().fired, 1);
        s.put_alarm(&spec, true).unwrap();
        assert_eq!(
            s.alarm_progress("guest/t").unwrap(),
            AlarmProgress { last_tick: 4000, fired: 0 }
        );
        assert_eq!(s.list_alarms().unwrap().len(), 1);
        assert!(s.delete_alarm(&n("guest"), &n("t")).unwrap().is_some());
        assert_eq!(s.alarm_progress("guest/t").unwrap(), AlarmProgress::default());
    }
}
