//! Real ZeroMQ sockets over TCP loopback: framing, batching, CURVE.

use quarry_net::{
    bind, connect, ConnectOptions, ConnectionEvent, CurveClientKeys, CurveServerKeys,
};
use quarry_net::{KeyPair, ServerOptions};
use quarry_proto::{encode_message, Message, Role};
use std::time::Duration;
use tokio::time::timeout;

fn hello(name: &str) -> Vec<u8> {
    encode_message(&Message::Hello {
        version: quarry_proto::PROTOCOL_VERSION,
        role: Role::Client,
        name: name.into(),
        slots: 0,
        functions: vec![],
        inventory: vec![],
        host: String::new(),
        resume: None,
    })
    .unwrap()
}

async fn next_frame(events: &mut tokio::sync::mpsc::Receiver<ConnectionEvent>) -> Vec<Message> {
    loop {
        match timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
        {
            Some(ConnectionEvent::Frame(body)) => return body.unwrap().messages,
            Some(ConnectionEvent::HandshakeFailed(e)) => panic!("handshake failed: {e}"),
            Some(_) => continue,
            None => panic!("connection closed"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_round_trip_and_batch() {
    let (server, mut incoming) = bind(ServerOptions::insecure("tcp://127.0.0.1:0")).unwrap();
    let (conn, mut events) = connect(ConnectOptions::insecure(server.endpoint())).unwrap();
    for i in 0..1000 {
        conn.send(hello(&format!("peer-{i}")));
    }
    let mut received = Vec::new();
    let mut peer = None;
    while received.len() < 1000 {
        let frame = timeout(Duration::from_secs(10), incoming.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(frame.roles.is_none(), "no CURVE, no roles");
        peer = Some(frame.peer);
        received.extend(frame.body.unwrap().messages);
    }
    for (i, m) in received.iter().enumerate() {
        let Message::Hello { name, .. } = m else {
            panic!("unexpected {m:?}")
        };
        assert_eq!(name, &format!("peer-{i}"), "order is preserved");
    }
    server.send(&peer.unwrap(), encode_message(&Message::Heartbeat).unwrap());
    assert_eq!(next_frame(&mut events).await, vec![Message::Heartbeat]);
}

fn curve_server(clients: &[&KeyPair], workers: &[&KeyPair]) -> (KeyPair, ServerOptions) {
    let server_keys = KeyPair::generate().unwrap();
    let mut options = ServerOptions::insecure("tcp://127.0.0.1:0");
    options.curve = Some(CurveServerKeys {
        keypair: server_keys.clone(),
        authorized_clients: clients.iter().map(|k| k.public).collect(),
        authorized_workers: workers.iter().map(|k| k.public).collect(),
    });
    (server_keys, options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curve_admits_listed_keys_with_their_role() {
    let client = KeyPair::generate().unwrap();
    let worker = KeyPair::generate().unwrap();
    let (server_keys, options) = curve_server(&[&client], &[&worker]);
    let (server, mut incoming) = bind(options).unwrap();
    for (keys, role) in [(&client, Role::Client), (&worker, Role::Worker)] {
        let mut opts = ConnectOptions::insecure(server.endpoint());
        opts.curve = Some(CurveClientKeys {
            server_public: server_keys.public,
            keypair: keys.clone(),
        });
        let (conn, _events) = connect(opts).unwrap();
        conn.send(hello("x"));
        let frame = timeout(Duration::from_secs(10), incoming.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frame.roles, Some(vec![role]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curve_rejects_unknown_keys_and_plain_peers_promptly() {
    let client = KeyPair::generate().unwrap();
    let (server_keys, options) = curve_server(&[&client], &[]);
    let (server, mut incoming) = bind(options).unwrap();

    let stranger = KeyPair::generate().unwrap();
    let mut opts = ConnectOptions::insecure(server.endpoint());
    opts.curve = Some(CurveClientKeys {
        server_public: server_keys.public,
        keypair: stranger,
    });
    let (conn, mut events) = connect(opts).unwrap();
    conn.send(hello("stranger"));
    let failure = loop {
        match timeout(Duration::from_secs(10), events.recv())
            .await
            .unwrap()
        {
            Some(ConnectionEvent::HandshakeFailed(e)) => break e,
            Some(_) => continue,
            None => panic!("closed"),
        }
    };
    assert!(failure.contains("refused"), "{failure}");

    let (plain, mut plain_events) = connect(ConnectOptions::insecure(server.endpoint())).unwrap();
    plain.send(hello("plain"));
    loop {
        match timeout(Duration::from_secs(10), plain_events.recv())
            .await
            .unwrap()
        {
            Some(ConnectionEvent::HandshakeFailed(_)) => break,
            Some(_) => continue,
            None => panic!("closed"),
        }
    }
    // Neither reached the scheduler.
    assert!(timeout(Duration::from_millis(300), incoming.recv())
        .await
        .is_err());
}
