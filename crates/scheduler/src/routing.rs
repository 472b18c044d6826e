//! Carrying out the core's commands: each becomes a message queued for a
//! worker's or client's peer. Messages wait in the [`Outbox`] until the end
//! of the loop's turn, then go to the I/O thread as one batch.

use crate::journaling::{Journaling, Target};
use crate::manifests::Manifests;
use crate::peers::Peers;
use quarry_core::{Command, Core};
use quarry_net::PeerId;
use quarry_proto::{encode_message, ClientId, Message, WorkerId};
use std::cell::RefCell;
use tracing::{info, warn};

/// Encoded messages waiting for the end of this turn of the loop. A
/// `RefCell` because replies are queued from `&self` helpers; the shell is
/// owned by one task, so borrows never overlap.
#[derive(Default)]
pub(crate) struct Outbox {
    queued: RefCell<Vec<(PeerId, Vec<u8>)>>,
}

impl Outbox {
    /// Queues a message for a peer.
    pub(crate) fn send(&self, peer: &PeerId, message: &Message) {
        match encode_message(message) {
            Ok(bytes) => self.queued.borrow_mut().push((peer.clone(), bytes)),
            Err(e) => warn!("cannot encode {} for a peer: {e}", message.kind()),
        }
    }

    /// Queues a message for a registered worker (dropped if it is gone).
    pub(crate) fn to_worker(&self, peers: &Peers, worker: WorkerId, message: &Message) {
        if let Some(peer) = peers.worker_peer(worker) {
            self.send(peer, message);
        }
    }

    /// Queues a message for a registered client (dropped if it is gone).
    pub(crate) fn to_client(&self, peers: &Peers, client: ClientId, message: &Message) {
        if let Some(peer) = peers.client_peer(client) {
            self.send(peer, message);
        }
    }

    /// Everything queued so far, leaving the outbox empty.
    pub(crate) fn take(&self) -> Vec<(PeerId, Vec<u8>)> {
        self.queued.take()
    }
}

/// Turns the core's commands into messages (and manifest writes, and
/// journal records). With a journal, `Accepted` waits until what the
/// request changed is on disk.
pub(crate) fn carry_out(
    commands: &mut Vec<Command>,
    core: &Core,
    peers: &mut Peers,
    manifests: &mut Manifests,
    outbox: &Outbox,
    mut journal: Option<&mut Journaling>,
) {
    // Manifests start first, so that the final progress of their jobs in
    // this same batch is held back until they are written.
    for command in commands.iter() {
        if let Command::JobFinished { info } = command {
            manifests.job_finished(info, core);
        }
    }
    for command in commands.drain(..) {
        match command {
            Command::SendJob { worker, spec } => {
                outbox.to_worker(peers, worker, &Message::Job(spec))
            }
            Command::Run { worker, run } => outbox.to_worker(peers, worker, &Message::Run(run)),
            Command::CancelOnWorker { worker, task } => {
                outbox.to_worker(peers, worker, &Message::CancelTask { task })
            }
            Command::TaskDone {
                client,
                task,
                outcome,
            } => outbox.to_client(peers, client, &Message::TaskDone { task, outcome }),
            Command::JobProgress { client, info } => {
                if let Some((client, info)) = manifests.hold(client, info) {
                    outbox.to_client(peers, client, &Message::JobProgress(info));
                }
            }
            Command::JobFinished { info } => {
                info!(job = %info.id, name = %info.name, state = ?info.state, "job finished")
            }
            Command::Accepted { client, request } => {
                let accepted = Message::Accepted { request };
                match journal.as_deref_mut() {
                    Some(journal) => journal.send_when_durable(Target::Client(client), accepted),
                    None => outbox.to_client(peers, client, &accepted),
                }
            }
            Command::Refused {
                client,
                request,
                reason,
            } => outbox.to_client(peers, client, &Message::Refused { request, reason }),
            Command::Record(change) => {
                if let Some(journal) = journal.as_deref_mut() {
                    journal.change(change);
                }
            }
            Command::DropWorker { worker } => {
                warn!(worker = %worker, "worker lost (no heartbeat); its tasks were requeued");
                peers.remove_worker(worker);
            }
            Command::WorkerReplaced { worker, by, name } => {
                info!(
                    worker = %by, replaced = %worker, name = %name,
                    "worker took over its predecessor of the same name; its tasks were requeued"
                );
                // If the old connection is still there, two processes share
                // the name: the old one stops rather than take it back.
                outbox.to_worker(
                    peers,
                    worker,
                    &Message::Rejected {
                        reason: format!(
                            "another worker named `{name}` joined (worker {by}) and took over \
                             this one's tasks; give each worker its own --name"
                        ),
                        fatal: true,
                    },
                );
                peers.remove_worker(worker);
            }
        }
    }
}
