//! Event-clock mode: the four input topics of a partition are merged by
//! `occurred_at`, so the partition's clock moves as in `replay`. A record is
//! released when every topic of its partition has a record waiting (the
//! earliest goes first), or when an empty topic has held the merge for
//! `max_task_idle` (it may simply have no traffic). Records that cannot be
//! decoded have no time and go out as soon as they reach the head.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::processor::Decoded;
use crate::time::EventTime;

/// Per topic-partition queue length above which fetching it should pause.
pub const PAUSE_AT: usize = 20_000;
/// …and below which it resumes.
pub const RESUME_AT: usize = 5_000;

#[derive(Default)]
struct Part {
    queues: Vec<VecDeque<Decoded>>,
    blocked_since: Option<Instant>,
}

pub struct Merger {
    topics: Vec<String>,
    max_idle: Duration,
    parts: BTreeMap<u32, Part>,
    len: usize,
}

fn time_of(item: &Decoded) -> EventTime {
    item.1.as_ref().map_or(EventTime::MIN, |e| e.occurred_at)
}

impl Merger {
    /// Merges `topics` (the input topics, in a fixed order that breaks ties).
    pub fn new(topics: Vec<String>, max_idle: Duration) -> Self {
        Merger {
            topics,
            max_idle,
            parts: BTreeMap::new(),
            len: 0,
        }
    }

    /// Records waiting, over all partitions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Records waiting for one topic-partition.
    pub fn queued(&self, topic: &str, partition: u32) -> usize {
        let Some(t) = self.topics.iter().position(|x| x == topic) else {
            return 0;
        };
        self.parts
            .get(&partition)
            .map_or(0, |p| p.queues.get(t).map_or(0, VecDeque::len))
    }

    /// Adds a consumed record; records of one topic-partition arrive in offset order.
    /// A record of a topic outside the merge is returned for immediate processing.
    pub fn push(&mut self, item: Decoded) -> Option<Decoded> {
        let Some(t) = self.topics.iter().position(|x| *x == item.0.topic) else {
            return Some(item);
        };
        let n = self.topics.len();
        let part = self.parts.entry(item.0.partition).or_default();
        part.queues.resize_with(n, VecDeque::new);
        part.queues[t].push_back(item);
        self.len += 1;
        None
    }

    /// Moves every record that may go now to `out`, in merge order.
    pub fn pop_ready(&mut self, now: Instant, out: &mut Vec<Decoded>) {
        for part in self.parts.values_mut() {
            loop {
                let mut best: Option<(EventTime, usize)> = None;
                let mut any_empty = false;
                for (t, q) in part.queues.iter().enumerate() {
                    match q.front() {
                        Some(item) => {
                            let at = time_of(item);
                            if best.is_none_or(|(b, _)| at < b) {
                                best = Some((at, t));
                            }
                        }
                        None => any_empty = true,
                    }
                }
                let Some((_, t)) = best else {
                    part.blocked_since = None;
                    break;
                };
                if any_empty {
                    let since = *part.blocked_since.get_or_insert(now);
                    if now.saturating_duration_since(since) < self.max_idle {
                        break;
                    }
                } else {
                    part.blocked_since = None;
                }
                if let Some(item) = part.queues[t].pop_front() {
                    self.len -= 1;
                    out.push(item);
                }
            }
        }
    }

    /// When a partition held back by an empty topic may next release records.
    pub fn next_release(&self) -> Option<Instant> {
        self.parts
            .values()
            .filter_map(|p| p.blocked_since.map(|s| s + self.max_idle))
            .min()
    }

    /// Forgets a partition given up (its records will be consumed again by
    /// the next owner, from the stored offsets).
    pub fn drop_partition(&mut self, partition: u32) {
        if let Some(part) = self.parts.remove(&partition) {
            self.len -= part.queues.iter().map(VecDeque::len).sum::<usize>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode, EventKind};
    use crate::processor::InputRecord;

    fn rec(topic: &str, partition: u32, offset: i64, at: &str) -> Decoded {
        let payload = format!(
            r#"{{"event_id":"e{offset}{topic}","contact_id":"c","occurred_at":"{at}","url":"https://x.test/"}}"#
        );
        let event = decode(EventKind::PageVisit, Some(b"c"), payload.as_bytes());
        let r = InputRecord {
            topic: topic.into(),
            partition,
            offset,
            key: Some(b"c".to_vec()),
            payload: Some(payload.into_bytes()),
        };
        (r, event)
    }

    fn offsets(out: &[Decoded]) -> Vec<(String, i64)> {
        out.iter()
            .map(|(r, _)| (r.topic.clone(), r.offset))
            .collect()
    }

    /// Topics `a` and `b`, one second of idle allowance.
    fn two_topics() -> Merger {
        Merger::new(vec!["a".into(), "b".into()], Duration::from_secs(1))
    }

    #[test]
    fn records_leave_in_time_order_once_every_topic_has_one() {
        let mut m = two_topics();
        let t0 = Instant::now();
        m.push(rec("a", 0, 0, "2026-01-01T00:00:02Z"));
        m.push(rec("a", 0, 1, "2026-01-01T00:00:04Z"));
        let mut out = Vec::new();
        m.pop_ready(t0, &mut out);
        assert!(out.is_empty(), "topic b might still have something earlier");
        m.push(rec("b", 0, 0, "2026-01-01T00:00:01Z"));
        m.push(rec("b", 0, 1, "2026-01-01T00:00:03Z"));
        m.pop_ready(t0, &mut out);
        assert_eq!(
            offsets(&out),
            [("b".into(), 0), ("a".into(), 0), ("b".into(), 1)],
            "stops when a topic runs dry"
        );
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn an_idle_topic_holds_the_merge_for_at_most_max_idle() {
        let mut m = two_topics();
        let t0 = Instant::now();
        m.push(rec("a", 3, 0, "2026-01-01T00:00:02Z"));
        let mut out = Vec::new();
        m.pop_ready(t0, &mut out);
        assert!(out.is_empty());
        assert_eq!(m.next_release(), Some(t0 + Duration::from_secs(1)));
        m.pop_ready(t0 + Duration::from_millis(999), &mut out);
        assert!(out.is_empty());
        m.pop_ready(t0 + Duration::from_secs(1), &mut out);
        assert_eq!(offsets(&out), [("a".into(), 0)]);
    }

    #[test]
    fn partitions_merge_independently_and_can_be_dropped() {
        let mut m = two_topics();
        let t0 = Instant::now();
        m.push(rec("a", 0, 0, "2026-01-01T00:00:02Z"));
        m.push(rec("a", 1, 0, "2026-01-01T00:00:01Z"));
        m.push(rec("b", 1, 0, "2026-01-01T00:00:03Z"));
        let mut out = Vec::new();
        m.pop_ready(t0, &mut out);
        assert_eq!(offsets(&out), [("a".into(), 0)]);
        assert_eq!(out[0].0.partition, 1);
        assert_eq!(m.queued("a", 0), 1);
        m.drop_partition(0);
        m.drop_partition(1);
        assert!(m.is_empty());
        assert!(m.push(rec("other", 0, 0, "2026-01-01T00:00:01Z")).is_some());
    }
}
