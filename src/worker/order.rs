//! When a record's result may be published: as soon as it is final (an invalid record at once, an
//! event once the retry round that settled it is over), provided every earlier record of the batch
//! with the same result key (the model) has been published. So one model's results keep the order
//! of its events, and nothing else waits: an event retried after a transient failure holds back only
//! its own model's later results, not the batch's.

use std::collections::{HashMap, VecDeque};

/// Each record's deliveries (dead letter, result), held from when they are final until they may go.
pub struct Outbox<D> {
    order: PublishOrder,
    held: HashMap<usize, Vec<D>>,
    ready: Vec<D>,
}

impl<D> Outbox<D> {
    /// `keys[i]`: the key record `i`'s result is published under.
    pub fn new(keys: Vec<String>) -> Self {
        Self {
            order: PublishOrder::new(keys),
            held: HashMap::new(),
            ready: Vec::new(),
        }
    }

    /// Record `index`'s result is final, and these are its deliveries, in the order they start.
    pub fn finished(&mut self, index: usize, deliveries: Vec<D>) {
        self.held.insert(index, deliveries);
        for publishable in self.order.finished(index) {
            self.ready.extend(self.held.remove(&publishable).into_iter().flatten());
        }
    }

    /// The deliveries that may start now, in the order to start them; all of them must start before
    /// those of a later call.
    pub fn take_ready(&mut self) -> Vec<D> {
        std::mem::take(&mut self.ready)
    }

    /// Whether every final record's deliveries have been taken.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty() && self.ready.is_empty()
    }
}

/// The batch's records by result key, each key's in record order, and which are final.
struct PublishOrder {
    waiting: HashMap<String, VecDeque<usize>>,
    keys: Vec<String>,
    finals: Vec<bool>,
}

impl PublishOrder {
    /// `keys[i]`: the key record `i`'s result is published under.
    fn new(keys: Vec<String>) -> Self {
        let mut waiting: HashMap<String, VecDeque<usize>> = HashMap::new();
        for (index, key) in keys.iter().enumerate() {
            waiting.entry(key.clone()).or_default().push_back(index);
        }
        let finals = vec![false; keys.len()];
        Self { waiting, keys, finals }
    }

    /// Record `index`'s result is final: the records that may now be published, in record order
    /// (the caller starts their deliveries in that order, and before any later call's).
    fn finished(&mut self, index: usize) -> Vec<usize> {
        self.finals[index] = true;
        let mut now = Vec::new();
        if let Some(queue) = self.waiting.get_mut(&self.keys[index]) {
            while let Some(&front) = queue.front() {
                if !self.finals[front] {
                    break;
                }
                now.push(front);
                queue.pop_front();
            }
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(keys: &[&str]) -> PublishOrder {
        PublishOrder::new(keys.iter().map(|k| k.to_string()).collect())
    }

    #[test]
    fn a_final_result_goes_at_once_unless_an_earlier_one_of_its_key_is_not_final() {
        let mut order = order(&["a", "b", "a", "c", "a"]);
        // b and c wait for nobody.
        assert_eq!(order.finished(3), [3]);
        assert_eq!(order.finished(1), [1]);
        // The second and third of a wait for the first; then go with it, in order.
        assert_eq!(order.finished(4), Vec::<usize>::new());
        assert_eq!(order.finished(2), Vec::<usize>::new());
        assert_eq!(order.finished(0), [0, 2, 4]);
    }

    #[test]
    fn an_outbox_releases_a_records_deliveries_together_in_their_order() {
        let mut outbox = Outbox::new(vec!["a".into(), "b".into(), "a".into()]);
        outbox.finished(2, vec!["a2 result"]);
        outbox.finished(1, vec!["b1 dead letter", "b1 result"]);
        assert_eq!(outbox.take_ready(), ["b1 dead letter", "b1 result"]);
        assert!(!outbox.is_empty());
        outbox.finished(0, vec!["a0 result"]);
        assert_eq!(outbox.take_ready(), ["a0 result", "a2 result"]);
        assert!(outbox.is_empty() && outbox.take_ready().is_empty());
    }

    #[test]
    fn each_record_is_published_once() {
        let mut order = order(&["a", "a"]);
        assert_eq!(order.finished(0), [0]);
        assert_eq!(order.finished(1), [1]);
        assert_eq!(order.finished(1), Vec::<usize>::new());
    }
}
