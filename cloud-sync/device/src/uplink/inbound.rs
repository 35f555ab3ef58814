//! Messages from the cloud for the agent to act on (pickup orders, cancels, stock counts,
//! config documents).
//! The broker's delivery is acknowledged only once the agent has dealt with one, in the order
//! they came, so an order the agent could not store is delivered again after a reconnect
//! (the device keeps a persistent session).

use tokio::sync::oneshot;

use crate::contract::{Envelope, OrderMessage, OrderMessageError, Rejection};

/// Messages the uplink holds for the agent before it stops reading the broker.
pub const INBOUND_QUEUE: usize = 64;

/// One message from `.../d/{device}/orders`, parsed and bounded.
#[derive(Debug)]
pub struct Inbound {
    pub message: Result<OrderMessage, OrderMessageError>,
    done: oneshot::Sender<()>,
}

impl Inbound {
    pub(super) fn new(
        message: Result<OrderMessage, OrderMessageError>,
    ) -> (Inbound, oneshot::Receiver<()>) {
        let (done, rx) = oneshot::channel();
        (Inbound { message, done }, rx)
    }

    /// The message is dealt with (stored, or refused for good): the broker may forget it.
    /// Dropping an `Inbound` without calling this means it was not stored: the uplink
    /// reconnects so that the broker delivers it again.
    pub fn done(self) {
        let _ = self.done.send(());
    }
}

/// Config documents held for the agent; they are rare, and a retained one dropped here is
/// read again on the next connection.
pub const CONFIG_QUEUE: usize = 16;

/// One message off a config topic, read and bounded but not yet verified. Its delivery is
/// acknowledged to the broker at once: it is retained and comes again on every connection.
#[derive(Debug)]
pub struct ConfigIn {
    pub topic: String,
    pub envelope: Result<Envelope, Rejection>,
}
