//! Priority queues of task slots with lazy deletion.
//!
//! A queued task can sit in two queues at once (its preferred worker's local
//! queue and its function's waiting queue), and cancellation must not scan a
//! million entries. So entries are never removed from the middle: each entry
//! carries the task's enqueue ticket, and an entry whose task has since left
//! the queued state (or was queued again with a newer ticket) is stale and is
//! dropped when it reaches the front.

use std::collections::VecDeque;

/// One queued task: its slot in the task table and the ticket it was queued
/// with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueEntry {
    /// Index into the core's task table.
    pub task: u32,
    /// The task's enqueue ticket when this entry was pushed.
    pub ticket: u32,
}

/// FIFO queues, one per priority, served highest priority first.
///
/// Levels sit in a small vector sorted by descending priority: jobs use a
/// handful of priorities, and scanning a few contiguous levels is cheaper
/// than walking a tree on every pick.
#[derive(Debug, Default)]
pub(crate) struct PriorityQueue {
    levels: Vec<(i32, VecDeque<QueueEntry>)>,
}

impl PriorityQueue {
    fn level_mut(&mut self, priority: i32) -> &mut VecDeque<QueueEntry> {
        let at = match self.levels.binary_search_by(|(p, _)| priority.cmp(p)) {
            Ok(at) => at,
            Err(at) => {
                self.levels.insert(at, (priority, VecDeque::new()));
                at
            }
        };
        &mut self.levels[at].1
    }

    /// Appends behind every entry of the same priority.
    pub fn push_back(&mut self, priority: i32, entry: QueueEntry) {
        self.level_mut(priority).push_back(entry);
    }

    /// Puts ahead of every entry of the same priority (for tasks that
    /// already waited once and come back after a lost worker or a failure).
    pub fn push_front(&mut self, priority: i32, entry: QueueEntry) {
        self.level_mut(priority).push_front(entry);
    }

    /// The first live entry of the highest priority, with that priority.
    /// Stale entries met on the way are dropped.
    pub fn head(&mut self, is_live: impl Fn(QueueEntry) -> bool) -> Option<(i32, QueueEntry)> {
        self.first_ready(is_live, |_| true)
    }

    /// Goes through the priorities from the highest and returns the first
    /// level's head entry that `ready` accepts. Only each level's head is
    /// tested: entries of one level are queued in time order, so when the
    /// head is not ready (its locality wait has not expired) neither is any
    /// entry behind it. (Placement moves expired entries not worth stealing
    /// to the back; they wait for the entries ahead of them, harmlessly.)
    pub fn first_ready(
        &mut self,
        is_live: impl Fn(QueueEntry) -> bool,
        ready: impl Fn(QueueEntry) -> bool,
    ) -> Option<(i32, QueueEntry)> {
        let mut found = None;
        for (priority, level) in self.levels.iter_mut() {
            while level.front().is_some_and(|&e| !is_live(e)) {
                level.pop_front();
            }
            if let Some(&head) = level.front() {
                if ready(head) {
                    found = Some((*priority, head));
                    break;
                }
            }
        }
        self.levels.retain(|(_, level)| !level.is_empty());
        found
    }

    /// Removes the head of one priority level: the entry that
    /// [`Self::head`] or [`Self::first_ready`] just returned.
    pub fn pop_front(&mut self, priority: i32) -> Option<QueueEntry> {
        let at = self
            .levels
            .binary_search_by(|(p, _)| priority.cmp(p))
            .ok()?;
        let entry = self.levels[at].1.pop_front();
        if self.levels[at].1.is_empty() {
            self.levels.remove(at);
        }
        entry
    }

    /// Empties the queue, returning its live entries in service order.
    pub fn drain_live(&mut self, is_live: impl Fn(QueueEntry) -> bool) -> Vec<QueueEntry> {
        std::mem::take(&mut self.levels)
            .into_iter()
            .flat_map(|(_, level)| level)
            .filter(|&e| is_live(e))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(task: u32) -> QueueEntry {
        QueueEntry { task, ticket: 0 }
    }

    #[test]
    fn serves_higher_priority_first_and_fifo_within_one() {
        let mut q = PriorityQueue::default();
        q.push_back(0, entry(1));
        q.push_back(5, entry(2));
        q.push_back(0, entry(3));
        q.push_back(5, entry(4));
        q.push_front(0, entry(5));
        let mut order = Vec::new();
        while let Some((p, e)) = q.head(|_| true) {
            order.push(e.task);
            assert_eq!(q.pop_front(p), Some(e));
        }
        assert_eq!(order, vec![2, 4, 5, 1, 3]);
    }

    #[test]
    fn skips_stale_entries_and_unready_levels() {
        let mut q = PriorityQueue::default();
        q.push_back(9, entry(1));
        q.push_back(1, entry(2));
        q.push_back(1, entry(3));
        // Task 2 is stale; level 9's head is not ready.
        let got = q.first_ready(|e| e.task != 2, |e| e.task != 1);
        assert_eq!(got, Some((1, entry(3))));
        assert_eq!(q.drain_live(|_| true), vec![entry(1), entry(3)]);
        assert_eq!(q.head(|_| true), None);
    }
}
