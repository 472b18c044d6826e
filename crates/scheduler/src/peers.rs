//! Who is connected: ZeroMQ peers ↔ worker and client ids, and how many
//! registered connections each origin (key fingerprint or address) holds.
//!
//! Pure bookkeeping: no sockets, no core. The shell asks it who a peer is,
//! registers peers after admission and removes them when they go.

use quarry_core::Millis;
use quarry_net::PeerId;
use quarry_proto::{ClientId, WorkerId};
use std::collections::HashMap;

/// Who a connected peer is.
#[derive(Clone, Debug)]
pub(crate) enum Peer {
    Worker { id: WorkerId },
    Client { id: ClientId, last_seen: Millis },
}

/// The registered peers and their ids.
#[derive(Debug)]
pub(crate) struct Peers {
    by_peer: HashMap<PeerId, Peer>,
    workers: HashMap<WorkerId, PeerId>,
    clients: HashMap<ClientId, PeerId>,
    next_worker: u32,
    next_client: u32,
    /// Where each registered peer comes from.
    origins: HashMap<PeerId, String>,
    /// Registered peers per origin, against `max_connections_per_peer`.
    connections: HashMap<String, usize>,
}

impl Default for Peers {
    fn default() -> Self {
        Peers {
            by_peer: HashMap::new(),
            workers: HashMap::new(),
            clients: HashMap::new(),
            next_worker: 1,
            next_client: 1,
            origins: HashMap::new(),
            connections: HashMap::new(),
        }
    }
}

impl Peers {
    /// The registered peer behind `peer`, if any.
    pub(crate) fn get_mut(&mut self, peer: &PeerId) -> Option<&mut Peer> {
        self.by_peer.get_mut(peer)
    }

    /// Registered connections from `origin`.
    pub(crate) fn open_from(&self, origin: &str) -> usize {
        self.connections.get(origin).copied().unwrap_or(0)
    }

    /// Registers `peer` as a new worker and returns its id.
    pub(crate) fn add_worker(&mut self, peer: &PeerId, origin: &str) -> WorkerId {
        let id = WorkerId(self.next_worker);
        self.next_worker += 1;
        self.register(peer, origin, Peer::Worker { id });
        self.workers.insert(id, peer.clone());
        id
    }

    /// Registers `peer` as a new client seen at `now` and returns its id.
    pub(crate) fn add_client(&mut self, peer: &PeerId, origin: &str, now: Millis) -> ClientId {
        let id = ClientId(self.next_client);
        self.next_client += 1;
        self.register(peer, origin, Peer::Client { id, last_seen: now });
        self.clients.insert(id, peer.clone());
        id
    }

    fn register(&mut self, peer: &PeerId, origin: &str, who: Peer) {
        *self.connections.entry(origin.to_string()).or_default() += 1;
        self.origins.insert(peer.clone(), origin.to_string());
        self.by_peer.insert(peer.clone(), who);
    }

    /// Removes a registered peer, gives back its connection slot and
    /// returns who it was.
    pub(crate) fn remove(&mut self, peer: &PeerId) -> Option<Peer> {
        if let Some(origin) = self.origins.remove(peer) {
            if let Some(open) = self.connections.get_mut(&origin) {
                *open -= 1;
                if *open == 0 {
                    self.connections.remove(&origin);
                }
            }
        }
        let who = self.by_peer.remove(peer)?;
        match &who {
            Peer::Worker { id } => self.workers.remove(id),
            Peer::Client { id, .. } => self.clients.remove(id),
        };
        Some(who)
    }

    /// Removes a worker by id (the core declared it lost).
    pub(crate) fn remove_worker(&mut self, worker: WorkerId) {
        if let Some(peer) = self.workers.get(&worker).cloned() {
            self.remove(&peer);
        }
    }

    /// Clients not heard from since `now - timeout_ms`.
    pub(crate) fn silent_clients(&self, now: Millis, timeout_ms: u64) -> Vec<PeerId> {
        self.by_peer
            .iter()
            .filter_map(|(peer, who)| match who {
                Peer::Client { last_seen, .. } if now.saturating_sub(*last_seen) > timeout_ms => {
                    Some(peer.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// The peer of a registered worker.
    pub(crate) fn worker_peer(&self, worker: WorkerId) -> Option<&PeerId> {
        self.workers.get(&worker)
    }

    /// The peer of a registered client.
    pub(crate) fn client_peer(&self, client: ClientId) -> Option<&PeerId> {
        self.clients.get(&client)
    }

    /// Registered workers' ids, in no particular order.
    pub(crate) fn worker_ids(&self) -> impl Iterator<Item = WorkerId> + '_ {
        self.workers.keys().copied()
    }

    /// Registered clients.
    pub(crate) fn client_count(&self) -> usize {
        self.clients.len()
    }
}
