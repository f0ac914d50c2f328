//! Which members a node stays connected to for gossip.
//!
//! Every node orders the members by PeerId (a hash of each key, so the order is random but the
//! same everywhere) into a ring and dials the members at distances 1, 2, 4, 8, ... ahead of it,
//! at most `gossip_peers / 2` of them. Each member is also dialled by exactly as many others (the
//! ones behind it at those distances), so a node keeps at most `gossip_peers` gossip connections
//! whatever the federation's size, and the ring with its power-of-two chords is connected with a
//! diameter of about log2(N) hops. Every node computes every other node's neighbours the same
//! way, so it knows which of its inbound connections are gossip and which came for one job.

use std::collections::HashSet;

use libp2p::PeerId;

/// A node's gossip neighbours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Neighbours {
    /// The members this node dials and redials.
    pub dial: HashSet<PeerId>,
    /// Those, and the members that dial this node: connections to keep open while idle.
    pub keep: HashSet<PeerId>,
}

/// The neighbours of `local` among `members` (which may include `local`). `gossip_peers` 0, or
/// a federation no bigger than it, means every member (a full mesh).
pub fn gossip_neighbours(members: &[PeerId], local: PeerId, gossip_peers: usize) -> Neighbours {
    let mut ring: Vec<PeerId> = members.to_vec();
    ring.sort_by_key(|p| p.to_bytes());
    ring.dedup();
    let n = ring.len();
    let Some(me) = ring.iter().position(|p| *p == local) else {
        return Neighbours::default();
    };
    if gossip_peers == 0 || n <= gossip_peers + 1 {
        let all: HashSet<PeerId> = ring.into_iter().filter(|p| *p != local).collect();
        return Neighbours { dial: all.clone(), keep: all };
    }
    let out = (gossip_peers / 2).max(1);
    let distances: Vec<usize> =
        std::iter::successors(Some(1usize), |d| d.checked_mul(2)).take_while(|d| *d < n).take(out).collect();
    let dial: HashSet<PeerId> = distances.iter().map(|d| ring[(me + d) % n]).collect();
    let dialled_by = distances.iter().map(|d| ring[(me + n - d % n) % n]);
    let keep = dial.iter().copied().chain(dialled_by).filter(|p| *p != local).collect();
    Neighbours { dial, keep }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, VecDeque};

    use super::*;

    fn members(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    /// Every node's view, and the undirected graph of who dials whom.
    fn graph(members: &[PeerId], gossip_peers: usize) -> HashMap<PeerId, HashSet<PeerId>> {
        let mut edges: HashMap<PeerId, HashSet<PeerId>> = HashMap::new();
        for m in members {
            for d in gossip_neighbours(members, *m, gossip_peers).dial {
                edges.entry(*m).or_default().insert(d);
                edges.entry(d).or_default().insert(*m);
            }
        }
        edges
    }

    fn hops_from(edges: &HashMap<PeerId, HashSet<PeerId>>, start: PeerId) -> HashMap<PeerId, usize> {
        let mut hops = HashMap::from([(start, 0)]);
        let mut queue = VecDeque::from([start]);
        while let Some(p) = queue.pop_front() {
            for q in &edges[&p] {
                if !hops.contains_key(q) {
                    hops.insert(*q, hops[&p] + 1);
                    queue.push_back(*q);
                }
            }
        }
        hops
    }

    #[test]
    fn a_small_federation_is_a_full_mesh() {
        let m = members(8);
        let n = gossip_neighbours(&m, m[3], 12);
        assert_eq!(n.dial.len(), 7);
        assert_eq!(n.keep, n.dial);
        assert!(!n.dial.contains(&m[3]));
        assert_eq!(gossip_neighbours(&m, m[0], 0).dial.len(), 7, "0 means every member");
    }

    #[test]
    fn degree_stays_bounded_and_the_graph_connected_as_the_federation_grows() {
        for (n, gossip_peers) in [(30, 12), (50, 12), (100, 12), (200, 12), (200, 8), (31, 4)] {
            let m = members(n);
            let edges = graph(&m, gossip_peers);
            for p in &m {
                let view = gossip_neighbours(&m, *p, gossip_peers);
                assert!(view.dial.len() <= gossip_peers / 2, "{n} nodes: dials {}", view.dial.len());
                assert!(view.keep.len() <= gossip_peers, "{n} nodes: keeps {}", view.keep.len());
                // What a node keeps is exactly its edges in the graph everyone computes alike.
                assert_eq!(view.keep, edges[p], "{n} nodes: views disagree");
            }
            let hops = hops_from(&edges, m[0]);
            assert_eq!(hops.len(), n, "{n} nodes with {gossip_peers}: not connected");
            let diameter = *hops.values().max().unwrap();
            assert!(diameter <= 2 * (usize::BITS - n.leading_zeros()) as usize, "{n} nodes: {diameter} hops");
        }
    }

    #[test]
    fn at_fifty_nodes_connections_are_at_least_three_times_fewer_than_a_full_mesh() {
        let m = members(50);
        let edges: usize = graph(&m, 12).values().map(HashSet::len).sum::<usize>() / 2;
        assert!(edges * 3 <= 50 * 49 / 2, "{edges} connections");
    }

    #[test]
    fn a_node_that_is_not_listed_has_no_neighbours() {
        let m = members(20);
        assert_eq!(gossip_neighbours(&m, PeerId::random(), 12), Neighbours::default());
    }
}
