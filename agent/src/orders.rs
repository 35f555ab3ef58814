//! What the agent does with each message on its orders topic: reserve or reject an order,
//! cancel one, set a SKU's stock. Each is stored before the broker's delivery is
//! acknowledged; one that could not be stored is left unacknowledged, so the broker
//! delivers it again.
//!
//! Messages are handed to the writer in the order they came, up to [`IN_FLIGHT`] before the
//! first is answered, so a burst of orders shares commits; deliveries are acknowledged in
//! the same order.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use caidan_sync::contract::{OrderMessage, OrderMessageError, StockReason};
use caidan_sync::uplink::Inbound;
use tokio::sync::mpsc;

use crate::http::Metrics;
use crate::pickup::PickupHasher;
use crate::store::{OrderOutcome, StockChange, StockUpdate, StoreError, WriterHandle};

/// Order messages handed to the writer and not yet answered.
const IN_FLIGHT: usize = 64;

/// What is left to do once the writer answers.
type Next = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// Handles order messages in the order they came until the uplink stops sending them.
pub async fn handle_orders(
    mut inbound: mpsc::Receiver<Inbound>,
    writer: WriterHandle,
    pickups: PickupHasher,
    metrics: Metrics,
) {
    let mut pending: VecDeque<(Inbound, Next)> = VecDeque::new();
    let mut open = true;
    while open || !pending.is_empty() {
        tokio::select! {
            biased;
            r = front(&mut pending), if !pending.is_empty() => {
                let (msg, _) = pending.pop_front().expect("a pending message");
                finish(msg, r);
            }
            m = inbound.recv(), if open && pending.len() < IN_FLIGHT => match m {
                Some(msg) => match submit(&msg.message, &writer, &pickups, &metrics).await {
                    Ok(answer) => pending.push_back((msg, answer)),
                    Err(e) => finish(msg, Err(e)),
                },
                None => open = false,
            },
        }
    }
}

async fn front(pending: &mut VecDeque<(Inbound, Next)>) -> Result<(), StoreError> {
    match pending.front_mut() {
        Some((_, answer)) => answer.as_mut().await,
        None => std::future::pending().await,
    }
}

fn finish(msg: Inbound, r: Result<(), StoreError>) {
    match r {
        Ok(()) => msg.done(),
        Err(e) => {
            // Not acknowledged: the uplink reconnects and the broker delivers it again.
            tracing::error!(error = %e, "order message not stored; it will be delivered again");
            drop(msg);
        }
    }
}

/// Hands one message to the writer; the answer says how it went.
async fn submit(
    message: &Result<OrderMessage, OrderMessageError>,
    writer: &WriterHandle,
    pickups: &PickupHasher,
    metrics: &Metrics,
) -> Result<Next, StoreError> {
    let metrics = metrics.clone();
    Ok(match message {
        Ok(OrderMessage::Order(order)) => {
            let code = pickups.hash(&order.pickup_code);
            let pending = writer.submit_order(order.clone(), code).await?;
            let id = order.order_id.clone();
            Box::pin(async move {
                match pending.wait().await? {
                    OrderOutcome::Reserved => {
                        metrics.order("reserved");
                        tracing::info!(order = %id, "order reserved");
                    }
                    OrderOutcome::Rejected(reason) => {
                        metrics.order(&format!("rejected_{}", reason.as_str()));
                        tracing::info!(order = %id, reason = reason.as_str(), "order rejected");
                    }
                    OrderOutcome::Duplicate => {
                        metrics.order("duplicate");
                        tracing::debug!(order = %id, "order delivered again; already handled");
                    }
                    OrderOutcome::Conflict => {
                        metrics.order("conflict");
                        tracing::warn!(order = %id, "order id already used for another order; ignored");
                    }
                }
                Ok(())
            })
        }
        Ok(OrderMessage::Cancel(c)) => {
            let pending = writer.submit_cancel(c.order_id.clone()).await?;
            let id = c.order_id.clone();
            Box::pin(async move {
                match pending.wait().await? {
                    Ok(()) => {
                        metrics.order("cancelled");
                        tracing::info!(order = %id, "order cancelled");
                    }
                    Err(why) => {
                        metrics.order("cancel_ignored");
                        tracing::warn!(order = %id, %why, "cancel changed nothing");
                    }
                }
                Ok(())
            })
        }
        Ok(OrderMessage::SetStock(s)) => {
            let update = StockUpdate {
                sku: s.sku.clone(),
                change: StockChange::Set(i64::from(s.on_hand)),
                reason: StockReason::Cloud,
                note: None,
            };
            let pending = writer.submit_stock(update).await?;
            let sku = s.sku.clone();
            Box::pin(async move {
                match pending.wait().await? {
                    Ok(after) => {
                        metrics.order("stock_set");
                        tracing::info!(%sku, on_hand = after.on_hand, "stock set by the store system");
                    }
                    Err(why) => {
                        metrics.order("stock_refused");
                        tracing::warn!(%sku, %why, "stock count refused");
                    }
                }
                Ok(())
            })
        }
        Err(OrderMessageError::Invalid { order_id, reason }) => {
            metrics.order("rejected_invalid");
            tracing::warn!(order = %order_id, %reason, "invalid order rejected");
            let pending = writer.submit_invalid_order(order_id.clone()).await?;
            Box::pin(async move { pending.wait().await.map(|_| ()) })
        }
        Err(e) => {
            metrics.order("garbled");
            tracing::warn!(error = %e, "order message dropped");
            Box::pin(async { Ok(()) })
        }
    })
}
