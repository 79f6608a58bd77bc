//! The queue of activations waiting for memory, fair across namespaces.
//!
//! One FIFO per namespace (the caller's, the one an activation is billed to) and a rotation
//! of the namespaces that have waiters. Waiters are served round robin: every namespace's
//! first waiter before anyone's second, and a namespace that was just served goes to the
//! back of the rotation. So a namespace that floods the invoker delays another's activation
//! by at most one of its own placements, however long its own queue is; and the memory freed
//! while several namespaces wait is handed out in equal turns, so no namespace holds more than
//! its share of what frees up while others wait. Within a namespace the order stays FIFO.
//!
//! Must never: reorder one namespace's waiters, or grow past the pool's queue limit (the
//! pool checks [`FairQueue::len`] before pushing).

use std::collections::{HashMap, VecDeque};

use crate::model::EntityName;

/// A waiter's handle within the queue, stable while it waits.
pub type WaiterId = u64;

/// Waiting items of type `T`, per namespace.
#[derive(Debug)]
pub struct FairQueue<T> {
    queues: HashMap<EntityName, VecDeque<(WaiterId, T)>>,
    /// Namespaces with waiters, the next to be served first.
    rotation: VecDeque<EntityName>,
    len: usize,
    next_id: WaiterId,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        Self { queues: HashMap::new(), rotation: VecDeque::new(), len: 0, next_id: 0 }
    }
}

impl<T> FairQueue<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The waiters of `namespace`.
    pub fn len_of(&self, namespace: &EntityName) -> usize {
        self.queues.get(namespace).map_or(0, VecDeque::len)
    }

    /// Namespaces with at least one waiter.
    #[cfg(test)]
    fn namespaces(&self) -> usize {
        self.rotation.len()
    }

    /// Queues `item` behind the other waiters of `namespace`; a namespace that had none joins
    /// the rotation at its back.
    pub fn push(&mut self, namespace: &EntityName, item: T) -> WaiterId {
        let id = self.next_id;
        self.next_id += 1;
        let q = self.queues.entry(namespace.clone()).or_default();
        if q.is_empty() {
            self.rotation.push_back(namespace.clone());
        }
        q.push_back((id, item));
        self.len += 1;
        id
    }

    /// Every waiter's id in the order they are to be served: each namespace's first in
    /// rotation order, then each one's second, and so on.
    pub fn service_order(&self) -> Vec<WaiterId> {
        let mut order = Vec::with_capacity(self.len);
        let queues: Vec<&VecDeque<(WaiterId, T)>> =
            self.rotation.iter().filter_map(|ns| self.queues.get(ns)).collect();
        let deepest = queues.iter().map(|q| q.len()).max().unwrap_or(0);
        for depth in 0..deepest {
            order.extend(queues.iter().filter_map(|q| q.get(depth).map(|(id, _)| *id)));
        }
        order
    }

    /// The waiter `id`, if it still waits.
    pub fn get(&self, id: WaiterId) -> Option<&T> {
        self.find(id).and_then(|(ns, i)| self.queues.get(ns)?.get(i)).map(|(_, t)| t)
    }

    /// Takes waiter `id` out because it is being served: its namespace goes to the back of the
    /// rotation (it had its turn).
    pub fn serve(&mut self, id: WaiterId) -> Option<T> {
        let (ns, item) = self.take(id)?;
        if let Some(pos) = self.rotation.iter().position(|n| *n == ns) {
            if let Some(n) = self.rotation.remove(pos) {
                self.rotation.push_back(n);
            }
        }
        Some(item)
    }

    /// Removes every waiter for which `keep` is false (waiters whose caller went away); that
    /// is not a turn.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut gone = Vec::new();
        for q in self.queues.values() {
            gone.extend(q.iter().filter(|(_, t)| !keep(t)).map(|(id, _)| *id));
        }
        for id in gone {
            self.take(id);
        }
    }

    /// Removes every waiter, returning them (shutdown).
    pub fn drain(&mut self) -> Vec<T> {
        self.rotation.clear();
        self.len = 0;
        self.queues.drain().flat_map(|(_, q)| q.into_iter().map(|(_, t)| t)).collect()
    }

    fn find(&self, id: WaiterId) -> Option<(&EntityName, usize)> {
        self.queues
            .iter()
            .find_map(|(ns, q)| q.iter().position(|(i, _)| *i == id).map(|pos| (ns, pos)))
    }

    fn take(&mut self, id: WaiterId) -> Option<(EntityName, T)> {
        let (ns, pos) = self.find(id).map(|(ns, pos)| (ns.clone(), pos))?;
        let q = self.queues.get_mut(&ns)?;
        let (_, item) = q.remove(pos)?;
        self.len -= 1;
        if q.is_empty() {
            self.queues.remove(&ns);
            self.rotation.retain(|n| *n != ns);
        }
        Some((ns, item))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(n: &str) -> EntityName {
        EntityName::parse(n).unwrap()
    }

    /// Serves the queue one by one in service order, returning the items.
    fn serve_all(q: &mut FairQueue<&'static str>) -> Vec<&'static str> {
        let mut out = Vec::new();
        while let Some(id) = q.service_order().first().copied() {
            out.push(q.serve(id).unwrap());
        }
        out
    }

    #[test]
    fn a_flood_delays_a_newcomer_by_one_turn_at_most() {
        let mut q = FairQueue::default();
        for item in ["a1", "a2", "a3", "a4"] {
            q.push(&ns("a"), item);
        }
        q.push(&ns("b"), "b1");
        q.push(&ns("c"), "c1");
        q.push(&ns("b"), "b2");
        assert_eq!(q.len(), 7);
        assert_eq!(q.namespaces(), 3);
        assert_eq!(serve_all(&mut q), ["a1", "b1", "c1", "a2", "b2", "a3", "a4"]);
        assert!(q.is_empty() && q.namespaces() == 0);
    }

    #[test]
    fn the_order_is_each_namespaces_first_then_second() {
        let mut q = FairQueue::default();
        let a1 = q.push(&ns("a"), "a1");
        let a2 = q.push(&ns("a"), "a2");
        let b1 = q.push(&ns("b"), "b1");
        assert_eq!(q.service_order(), [a1, b1, a2]);
        // Serving a2 (a waiter further back that fits where a1 does not) is a's turn.
        assert_eq!(q.serve(a2), Some("a2"));
        assert_eq!(q.service_order(), [b1, a1]);
        assert_eq!(q.get(a1), Some(&"a1"));
    }

    #[test]
    fn giving_up_is_not_a_turn_and_empty_namespaces_leave() {
        let mut q = FairQueue::default();
        q.push(&ns("a"), "a1");
        let b1 = q.push(&ns("b"), "b1");
        let a2 = q.push(&ns("a"), "a2");
        q.retain(|t| *t != "a1");
        assert_eq!(q.service_order(), [a2, b1], "a keeps its place in the rotation");
        q.retain(|t| *t != "a2");
        assert_eq!(q.namespaces(), 1);
        assert_eq!(q.service_order(), [b1]);
        assert_eq!(q.drain(), ["b1"]);
        assert!(q.is_empty() && q.get(b1).is_none());
    }
}
