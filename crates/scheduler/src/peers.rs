//! Who is connected: ZeroMQ peers ↔ worker ids and client sessions, how
//! many client connections each origin (key fingerprint or address)
//! holds, and how fast each origin opens new sessions.
//!
//! A client session outlives its connection: a client that reconnects
//! (to this scheduler, or to it restarted with its journal) presents its
//! session's secret and gets its id back, so its task and job ids stay its
//! own. A session whose client stays silent past the client timeout is
//! *left* (the core ends the jobs it did not seal) but is kept a while
//! longer, so that a client cut off for longer still gets its sealed jobs'
//! results when it comes back.
//!
//! Pure bookkeeping: no sockets, no core. The shell asks it who a peer is,
//! registers peers after admission and removes them when they go.

use quarry_core::Millis;
use quarry_net::PeerId;
use quarry_proto::{ClientId, ClientSession, WorkerId};
use std::collections::{BTreeMap, HashMap};

/// Who a connected peer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    Worker { id: WorkerId },
    Client { id: ClientId },
}

/// One client session.
#[derive(Debug)]
struct Session {
    secret: u64,
    /// Its current connection, if any.
    peer: Option<PeerId>,
    /// When its client was last heard from (or the session restored).
    last_seen: Millis,
    /// Since when it is left (its client timed out), if it is.
    left_at: Option<Millis>,
}

/// How long a left session can still be resumed.
const LEFT_SESSION_KEPT_MS: Millis = 3600 * 1000;

/// Most left sessions kept (the oldest go first).
const MAX_LEFT_SESSIONS: usize = 10_000;

/// The registered peers, their ids and the client sessions.
#[derive(Debug)]
pub(crate) struct Peers {
    by_peer: HashMap<PeerId, Peer>,
    workers: HashMap<WorkerId, PeerId>,
    sessions: BTreeMap<ClientId, Session>,
    next_worker: u32,
    next_client: u32,
    /// Where each registered client connection comes from.
    origins: HashMap<PeerId, String>,
    /// Registered client connections per origin, against
    /// `max_connections_per_peer`. Workers do not count: many share one
    /// key or one host, and what they can make the scheduler hold is
    /// bounded per Hello and by the rate of new sessions.
    connections: HashMap<String, usize>,
    /// New sessions per origin, against the session rate.
    rates: HashMap<String, Bucket>,
}

/// A token bucket: one token per new session, refilled at the session
/// rate, holding at most one second's worth.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Millis,
}

/// Most origins whose session rate is tracked; beyond it, origins whose
/// bucket has refilled are forgotten (they are as good as new).
const MAX_TRACKED_ORIGINS: usize = 10_000;

impl Default for Peers {
    fn default() -> Self {
        Peers {
            by_peer: HashMap::new(),
            workers: HashMap::new(),
            sessions: BTreeMap::new(),
            next_worker: 1,
            next_client: 1,
            origins: HashMap::new(),
            connections: HashMap::new(),
            rates: HashMap::new(),
        }
    }
}

impl Peers {
    /// Sessions from a journal, each waiting for its client (it has until
    /// the client timeout counted from `now` to come back), and the
    /// lowest client id never given out.
    pub(crate) fn restore_sessions(
        &mut self,
        sessions: impl IntoIterator<Item = ClientSession>,
        next_client: u32,
        now: Millis,
    ) {
        for session in sessions {
            self.next_client = self.next_client.max(session.id.0.saturating_add(1));
            self.sessions.insert(
                session.id,
                Session {
                    secret: session.secret,
                    peer: None,
                    last_seen: now,
                    left_at: None,
                },
            );
        }
        self.next_client = self.next_client.max(next_client);
    }

    /// Who `peer` is, if registered.
    pub(crate) fn get(&self, peer: &PeerId) -> Option<Peer> {
        self.by_peer.get(peer).copied()
    }

    /// A client was heard from.
    pub(crate) fn touch_client(&mut self, client: ClientId, now: Millis) {
        if let Some(session) = self.sessions.get_mut(&client) {
            session.last_seen = now;
        }
    }

    /// Registered client connections from `origin`.
    pub(crate) fn open_from(&self, origin: &str) -> usize {
        self.connections.get(origin).copied().unwrap_or(0)
    }

    /// Takes a token for a new session from `origin` at `now`, with
    /// `per_second` new sessions a second allowed (and as many at once);
    /// false when the origin is over the rate. 0 is no limit.
    pub(crate) fn take_session_token(
        &mut self,
        origin: &str,
        now: Millis,
        per_second: u32,
    ) -> bool {
        if per_second == 0 {
            return true;
        }
        let full = f64::from(per_second);
        let refilled = |bucket: &Bucket| {
            let elapsed = now.saturating_sub(bucket.at) as f64 / 1000.0;
            (bucket.tokens + elapsed * full).min(full)
        };
        if self.rates.len() >= MAX_TRACKED_ORIGINS && !self.rates.contains_key(origin) {
            self.rates.retain(|_, bucket| refilled(bucket) < full);
        }
        let bucket = self.rates.entry(origin.to_string()).or_insert(Bucket {
            tokens: full,
            at: now,
        });
        bucket.tokens = refilled(bucket);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }

    /// Registers `peer` as a new worker and returns its id.
    pub(crate) fn add_worker(&mut self, peer: &PeerId, origin: &str) -> WorkerId {
        let id = WorkerId(self.next_worker);
        self.next_worker += 1;
        self.register(peer, origin, Peer::Worker { id });
        self.workers.insert(id, peer.clone());
        id
    }

    /// Opens a new session for `peer`, seen at `now`, with `secret`.
    pub(crate) fn add_client(
        &mut self,
        peer: &PeerId,
        origin: &str,
        now: Millis,
        secret: u64,
    ) -> ClientSession {
        let id = ClientId(self.next_client);
        self.next_client += 1;
        self.register(peer, origin, Peer::Client { id });
        self.sessions.insert(
            id,
            Session {
                secret,
                peer: Some(peer.clone()),
                last_seen: now,
                left_at: None,
            },
        );
        ClientSession { id, secret }
    }

    /// Whether `session` is one of ours (its secret matches).
    pub(crate) fn can_resume(&self, session: &ClientSession) -> bool {
        self.sessions
            .get(&session.id)
            .is_some_and(|s| s.secret == session.secret)
    }

    /// Binds a session that [`Peers::can_resume`] to `peer` (which must not
    /// be registered as anyone else), dropping the connection it had.
    pub(crate) fn resume_client(&mut self, peer: &PeerId, origin: &str, id: ClientId, now: Millis) {
        let old = self.sessions.get_mut(&id).and_then(|s| s.peer.take());
        if let Some(old) = old.filter(|old| old != peer) {
            self.unregister(&old);
        }
        if self.by_peer.get(peer) != Some(&Peer::Client { id }) {
            self.register(peer, origin, Peer::Client { id });
        }
        if let Some(session) = self.sessions.get_mut(&id) {
            session.peer = Some(peer.clone());
            session.last_seen = now;
            session.left_at = None;
        }
    }

    fn register(&mut self, peer: &PeerId, origin: &str, who: Peer) {
        if let Peer::Client { .. } = who {
            *self.connections.entry(origin.to_string()).or_default() += 1;
            self.origins.insert(peer.clone(), origin.to_string());
        }
        self.by_peer.insert(peer.clone(), who);
    }

    /// Forgets a connection and gives back its connection slot; returns
    /// who it was.
    fn unregister(&mut self, peer: &PeerId) -> Option<Peer> {
        if let Some(origin) = self.origins.remove(peer) {
            if let Some(open) = self.connections.get_mut(&origin) {
                *open -= 1;
                if *open == 0 {
                    self.connections.remove(&origin);
                }
            }
        }
        self.by_peer.remove(peer)
    }

    /// Removes a registered peer for good (it said Hello anew, as someone
    /// else): a worker is forgotten, a client session ends. Returns who it
    /// was.
    pub(crate) fn remove(&mut self, peer: &PeerId) -> Option<Peer> {
        let who = self.unregister(peer)?;
        match who {
            Peer::Worker { id } => {
                self.workers.remove(&id);
            }
            Peer::Client { id } => {
                self.sessions.remove(&id);
            }
        }
        Some(who)
    }

    /// Removes a worker by id (the core declared it lost).
    pub(crate) fn remove_worker(&mut self, worker: WorkerId) {
        if let Some(peer) = self.workers.get(&worker).cloned() {
            self.remove(&peer);
        }
    }

    /// Sessions whose client was not heard from since `now - timeout_ms`
    /// and that are not left yet: they are left from now on (their
    /// connections forgotten), and returned so the core ends their
    /// unsealed jobs. Left sessions past their keeping time go for good.
    pub(crate) fn take_silent_clients(&mut self, now: Millis, timeout_ms: u64) -> Vec<ClientId> {
        let silent: Vec<ClientId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.left_at.is_none() && now.saturating_sub(s.last_seen) > timeout_ms)
            .map(|(&id, _)| id)
            .collect();
        for id in &silent {
            let session = self.sessions.get_mut(id).expect("listed above");
            session.left_at = Some(now);
            if let Some(peer) = session.peer.take() {
                self.unregister(&peer);
            }
        }
        self.expire_left_sessions(now);
        silent
    }

    fn expire_left_sessions(&mut self, now: Millis) {
        self.sessions.retain(|_, s| {
            s.left_at
                .is_none_or(|at| now.saturating_sub(at) < LEFT_SESSION_KEPT_MS)
        });
        let mut left: Vec<(Millis, ClientId)> = self
            .sessions
            .iter()
            .filter_map(|(&id, s)| s.left_at.map(|at| (at, id)))
            .collect();
        if left.len() > MAX_LEFT_SESSIONS {
            left.sort_unstable();
            for (_, id) in &left[..left.len() - MAX_LEFT_SESSIONS] {
                self.sessions.remove(id);
            }
        }
    }

    /// The peer of a registered worker.
    pub(crate) fn worker_peer(&self, worker: WorkerId) -> Option<&PeerId> {
        self.workers.get(&worker)
    }

    /// The current connection of a client session.
    pub(crate) fn client_peer(&self, client: ClientId) -> Option<&PeerId> {
        self.sessions.get(&client)?.peer.as_ref()
    }

    /// Registered workers' ids, in no particular order.
    pub(crate) fn worker_ids(&self) -> impl Iterator<Item = WorkerId> + '_ {
        self.workers.keys().copied()
    }

    /// Clients connected now.
    pub(crate) fn client_count(&self) -> usize {
        self.sessions.values().filter(|s| s.peer.is_some()).count()
    }

    /// Every session that may still be resumed (for a compacted journal).
    pub(crate) fn sessions(&self) -> Vec<ClientSession> {
        self.sessions
            .iter()
            .map(|(&id, s)| ClientSession {
                id,
                secret: s.secret,
            })
            .collect()
    }

    /// The lowest client id never given out.
    pub(crate) fn next_client(&self) -> u32 {
        self.next_client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn peer(n: u8) -> PeerId {
        PeerId(Arc::from(&[n][..]))
    }

    #[test]
    fn a_session_resumes_on_a_new_connection_with_its_secret_only() {
        let mut peers = Peers::default();
        let session = peers.add_client(&peer(1), "a", 0, 42);
        assert_eq!(session.id, ClientId(1));
        assert!(!peers.can_resume(&ClientSession {
            secret: 41,
            ..session
        }));
        assert!(peers.can_resume(&session));
        peers.resume_client(&peer(2), "a", session.id, 5);
        assert_eq!(peers.client_peer(session.id), Some(&peer(2)));
        assert_eq!(peers.get(&peer(1)), None, "the old connection is gone");
        assert_eq!(peers.open_from("a"), 1);
    }

    #[test]
    fn peers_that_go_leave_nothing_behind() {
        let mut peers = Peers::default();
        for n in 0..100u8 {
            let id = peers.add_worker(&peer(n), &format!("origin-{}", n % 7));
            if n % 2 == 0 {
                peers.remove_worker(id);
            } else {
                assert_eq!(peers.remove(&peer(n)), Some(Peer::Worker { id }));
            }
        }
        assert!(peers.by_peer.is_empty() && peers.workers.is_empty());
        assert!(peers.origins.is_empty() && peers.connections.is_empty());
        let session = peers.add_client(&peer(1), "a", 0, 1);
        peers.take_silent_clients(10, 5);
        assert_eq!(peers.client_peer(session.id), None);
        assert!(peers.by_peer.is_empty() && peers.connections.is_empty());
    }

    #[test]
    fn workers_do_not_count_against_the_client_cap() {
        let mut peers = Peers::default();
        for n in 0..100u8 {
            peers.add_worker(&peer(n), "one-key");
        }
        assert_eq!(peers.open_from("one-key"), 0);
        peers.add_client(&peer(200), "one-key", 0, 1);
        assert_eq!(peers.open_from("one-key"), 1);
    }

    #[test]
    fn new_sessions_are_rate_limited_per_origin() {
        let mut peers = Peers::default();
        let admitted = (0..15)
            .filter(|_| peers.take_session_token("a", 0, 10))
            .count();
        assert_eq!(admitted, 10, "a burst of one second's worth");
        assert!(peers.take_session_token("b", 0, 10), "per origin");
        assert!(!peers.take_session_token("a", 50, 10));
        assert!(
            peers.take_session_token("a", 100, 10),
            "one token per 100 ms"
        );
        assert!(!peers.take_session_token("a", 150, 10));
        assert!(peers.take_session_token("a", 10_000, 0), "0 is no limit");
    }

    #[test]
    fn restored_sessions_wait_for_their_clients_and_keep_ids_apart() {
        let mut peers = Peers::default();
        let old = ClientSession {
            id: ClientId(7),
            secret: 9,
        };
        peers.restore_sessions([old], 12, 1_000);
        assert_eq!(peers.client_peer(old.id), None);
        assert_eq!(peers.add_client(&peer(1), "a", 1_000, 1).id, ClientId(12));
        // Silent past the timeout: left, but still resumable for a while.
        assert!(peers.take_silent_clients(2_000, 5_000).is_empty());
        assert_eq!(
            peers.take_silent_clients(7_000, 5_000),
            vec![old.id, ClientId(12)]
        );
        assert!(peers.take_silent_clients(8_000, 5_000).is_empty(), "once");
        assert!(peers.can_resume(&old));
        peers.take_silent_clients(7_000 + LEFT_SESSION_KEPT_MS, 5_000);
        assert!(!peers.can_resume(&old), "expired");
    }
}
