//! The shape of a tree reduce, as a pure state machine: values in, groups
//! to reduce out. No tasks, sockets or clocks, so that a tree over
//! thousands of maps can be checked in a unit test.

/// Where a tree reduce stands after a step.
#[derive(Debug, PartialEq)]
pub enum ReduceStep<V> {
    /// Reduce these values in one task; its value comes back to
    /// [`ReduceTree::reduced`] with the group's level.
    Run(ReduceGroup<V>),
    /// The tree is done: this is the value of the final reduction.
    Done(V),
}

/// Values that one reduce task combines.
#[derive(Debug, PartialEq)]
pub struct ReduceGroup<V> {
    /// The level of the value the task produces: 1 for a task over map
    /// results, 2 over level-1 values, and so on.
    pub level: u32,
    /// The task's number within its level, from 0.
    pub index: u64,
    /// Whether this is the final reduction, whose value is the job's
    /// result.
    pub last: bool,
    /// What it combines: at most the fan-in, at least one, except for the
    /// final reduction of a job with no maps (none).
    pub values: Vec<V>,
}

impl<V> ReduceGroup<V> {
    /// The task's key: `_reduce/result` for the final reduction, else
    /// `_reduce/L<level>-<index>`.
    pub fn key(&self) -> String {
        if self.last {
            "_reduce/result".to_string()
        } else {
            format!("_reduce/L{}-{:05}", self.level, self.index)
        }
    }
}

/// One level of the tree.
#[derive(Debug)]
struct Level<V> {
    /// Values at this level not yet handed to a reducer.
    waiting: Vec<V>,
    /// Tasks running whose values land at this level (maps for level 0).
    running: u64,
    /// Groups emitted so far that produce values at this level.
    emitted: u64,
}

impl<V> Default for Level<V> {
    fn default() -> Self {
        Level {
            waiting: Vec::new(),
            running: 0,
            emitted: 0,
        }
    }
}

/// A tree reduce with a fan-in: every `fan_in` values at one level become
/// one reduce task whose value joins the level above, as soon as they are
/// there, so reducers start while maps still run and no task combines more
/// than `fan_in` values. Once the last map is planned and done, what is
/// left at each level, from the bottom up, is reduced (or, a single value,
/// moved up), until one final reduction remains. The final reduction
/// always runs, even over one value or none, so the reducer's result is
/// the job's result however many maps there were.
///
/// Values are combined in no particular order: the reducer must be
/// associative and commutative.
#[derive(Debug)]
pub struct ReduceTree<V> {
    fan_in: usize,
    levels: Vec<Level<V>>,
    all_planned: bool,
    /// The level the final reduction produces, once it was emitted.
    final_level: Option<u32>,
}

impl<V> ReduceTree<V> {
    /// A tree combining at most `fan_in` values per task (at least 2).
    pub fn new(fan_in: usize) -> ReduceTree<V> {
        ReduceTree {
            fan_in: fan_in.max(2),
            levels: vec![Level::default()],
            all_planned: false,
            final_level: None,
        }
    }

    /// One more map task was submitted.
    pub fn map_planned(&mut self) {
        self.levels[0].running += 1;
    }

    /// No more map tasks will come.
    pub fn all_planned(&mut self) -> Vec<ReduceStep<V>> {
        self.all_planned = true;
        self.steps()
    }

    /// A map task finished with `value`.
    pub fn mapped(&mut self, value: V) -> Vec<ReduceStep<V>> {
        self.arrive(0, value)
    }

    /// The reduce task of a group of level `level` finished with `value`.
    pub fn reduced(&mut self, level: u32, value: V) -> Vec<ReduceStep<V>> {
        if self.final_level == Some(level) {
            return vec![ReduceStep::Done(value)];
        }
        self.arrive(level as usize, value)
    }

    fn arrive(&mut self, level: usize, value: V) -> Vec<ReduceStep<V>> {
        let at = &mut self.levels[level];
        at.running = at.running.saturating_sub(1);
        at.waiting.push(value);
        self.steps()
    }

    /// The groups that can run now.
    fn steps(&mut self) -> Vec<ReduceStep<V>> {
        let mut steps = Vec::new();
        for level in 0..self.levels.len() {
            while self.levels[level].waiting.len() >= self.fan_in {
                let values: Vec<V> = self.levels[level].waiting.drain(..self.fan_in).collect();
                steps.push(ReduceStep::Run(self.group(level + 1, values, false)));
            }
        }
        if self.all_planned && self.final_level.is_none() {
            self.flush(&mut steps);
        }
        steps
    }

    /// Reduces what is left at the lowest level that can get no more
    /// values, and so on up while levels settle.
    fn flush(&mut self, steps: &mut Vec<ReduceStep<V>>) {
        for level in 0..self.levels.len() {
            if self.levels[level].running > 0 {
                // Values are still coming here: nothing above can finish.
                return;
            }
            let above_busy = self.levels[level + 1..]
                .iter()
                .any(|above| above.running > 0 || !above.waiting.is_empty());
            let waiting = std::mem::take(&mut self.levels[level].waiting);
            if !above_busy {
                self.final_level = Some(level as u32 + 1);
                steps.push(ReduceStep::Run(self.group(level + 1, waiting, true)));
                return;
            }
            match waiting.len() {
                0 => {}
                // A single value needs no task: it joins the level above.
                1 => self.level_mut(level + 1).waiting.extend(waiting),
                _ => steps.push(ReduceStep::Run(self.group(level + 1, waiting, false))),
            }
        }
    }

    fn group(&mut self, level: usize, values: Vec<V>, last: bool) -> ReduceGroup<V> {
        let at = self.level_mut(level);
        at.running += 1;
        let index = at.emitted;
        at.emitted += 1;
        ReduceGroup {
            level: level as u32,
            index,
            last,
            values,
        }
    }

    fn level_mut(&mut self, level: usize) -> &mut Level<V> {
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Level::default);
        }
        &mut self.levels[level]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Runs a tree over `maps` values 1..=maps that end in the order
    /// `pick` chooses among the running tasks, reducing by summing, and
    /// returns the result, the largest group and the number of reduce
    /// tasks.
    fn simulate(
        maps: u64,
        fan_in: usize,
        plan_first: bool,
        pick: impl Fn(usize) -> usize,
    ) -> (u64, usize, u64) {
        let mut tree = ReduceTree::new(fan_in);
        // Finished tasks not yet reported: (level, value); level 0 = map.
        let mut running: VecDeque<(u32, u64)> = VecDeque::new();
        let mut largest = 0;
        let mut reducers = 0;
        let mut result = None;
        let mut take = |steps: Vec<ReduceStep<u64>>, running: &mut VecDeque<(u32, u64)>| {
            for step in steps {
                match step {
                    ReduceStep::Run(group) => {
                        assert!(group.values.len() <= fan_in, "a group over the fan-in");
                        largest = largest.max(group.values.len());
                        reducers += 1;
                        running.push_back((group.level, group.values.iter().sum()));
                    }
                    ReduceStep::Done(value) => {
                        assert!(result.replace(value).is_none(), "done twice");
                    }
                }
            }
        };
        for value in 1..=maps {
            tree.map_planned();
            running.push_back((0, value));
        }
        if plan_first {
            take(tree.all_planned(), &mut running);
        }
        let mut planned = plan_first;
        while let Some((level, value)) = {
            let at = pick(running.len().max(1)) % running.len().max(1);
            running.remove(at)
        } {
            let steps = if level == 0 {
                tree.mapped(value)
            } else {
                tree.reduced(level, value)
            };
            take(steps, &mut running);
            if !planned && running.iter().all(|(level, _)| *level > 0) {
                planned = true;
                take(tree.all_planned(), &mut running);
            }
        }
        if !planned {
            take(tree.all_planned(), &mut running);
            while let Some((level, value)) = running.pop_front() {
                take(tree.reduced(level, value), &mut running);
            }
        }
        (result.expect("the tree never finished"), largest, reducers)
    }

    #[test]
    fn ten_thousand_maps_with_fan_in_two_sum_exactly() {
        let maps = 10_000u64;
        let expected = maps * (maps + 1) / 2;
        for plan_first in [true, false] {
            // In order, newest first and scattered.
            let picks: [fn(usize) -> usize; 3] = [|_| 0, |n| n - 1, |n| (n * 7919) / 3];
            for pick in picks {
                let (sum, largest, reducers) = simulate(maps, 2, plan_first, pick);
                assert_eq!(sum, expected);
                assert!(largest <= 2);
                // A binary tree over n leaves has n - 1 inner nodes; the
                // final reduction over one value adds at most one.
                assert!(reducers <= maps, "{reducers} reducers");
            }
        }
    }

    #[test]
    fn wide_fan_in_keeps_groups_bounded_and_levels_few() {
        let (sum, largest, reducers) = simulate(100_000, 64, true, |_| 0);
        assert_eq!(sum, 100_000 * 100_001 / 2);
        assert_eq!(largest, 64);
        // 1563 at level 1, 25 at level 2, 1 final at level 3.
        assert_eq!(reducers, 1_563 + 25 + 1);
    }

    #[test]
    fn the_final_reduction_runs_over_one_value_and_over_none() {
        let (sum, largest, reducers) = simulate(1, 64, true, |_| 0);
        assert_eq!((sum, largest, reducers), (1, 1, 1));

        let mut tree: ReduceTree<u64> = ReduceTree::new(64);
        let steps = tree.all_planned();
        let [ReduceStep::Run(group)] = &steps[..] else {
            panic!("expected one final group, got {steps:?}");
        };
        assert!(group.last && group.values.is_empty());
        assert_eq!(group.key(), "_reduce/result");
        assert_eq!(
            tree.reduced(group.level, 0),
            vec![ReduceStep::Done(0)],
            "the final value ends the tree"
        );
    }

    #[test]
    fn reducers_start_before_the_maps_end() {
        let mut tree = ReduceTree::new(2);
        tree.map_planned();
        tree.map_planned();
        tree.map_planned();
        assert!(tree.mapped(1).is_empty());
        let steps = tree.mapped(2);
        let [ReduceStep::Run(group)] = &steps[..] else {
            panic!("expected a group, got {steps:?}");
        };
        assert_eq!((group.level, group.key()), (1, "_reduce/L1-00000".into()));
        assert!(!group.last);
    }
}
