use std::sync::OnceLock;

/// The process-wide ZeroMQ context. One context lets `inproc://` endpoints
/// and the ZAP handler be shared by every socket of the process.
pub(crate) fn context() -> &'static zmq::Context {
    static CONTEXT: OnceLock<zmq::Context> = OnceLock::new();
    CONTEXT.get_or_init(zmq::Context::new)
}
