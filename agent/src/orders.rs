//! What the agent does with each message on its orders topic: reserve or reject an order,
//! cancel one, set a SKU's stock. Each is stored before the broker's delivery is
//! acknowledged; one that could not be stored is left unacknowledged, so the broker
//! delivers it again.

use caidan_sync::contract::{OrderMessage, OrderMessageError, StockReason};
use caidan_sync::uplink::Inbound;
use tokio::sync::mpsc;

use crate::http::Metrics;
use crate::pickup::PickupHasher;
use crate::store::{OrderOutcome, StockChange, StockUpdate, StoreError, WriterHandle};

/// Handles order messages in the order they came until the uplink stops sending them.
pub async fn handle_orders(
    mut inbound: mpsc::Receiver<Inbound>,
    writer: WriterHandle,
    pickups: PickupHasher,
    metrics: Metrics,
) {
    while let Some(msg) = inbound.recv().await {
        match handle(&msg.message, &writer, &pickups, &metrics).await {
            Ok(()) => msg.done(),
            Err(e) => {
                // Not acknowledged: the uplink reconnects and the broker delivers it again.
                tracing::error!(error = %e, "order message not stored; it will be delivered again");
                drop(msg);
            }
        }
    }
}

async fn handle(
    message: &Result<OrderMessage, OrderMessageError>,
    writer: &WriterHandle,
    pickups: &PickupHasher,
    metrics: &Metrics,
) -> Result<(), StoreError> {
    match message {
        Ok(OrderMessage::Order(order)) => {
            let code = pickups.hash(&order.pickup_code);
            let outcome = writer.order(order.clone(), code).await?;
            let id = &order.order_id;
            match outcome {
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
        }
        Ok(OrderMessage::Cancel(c)) => match writer.cancel(c.order_id.clone()).await? {
            Ok(()) => {
                metrics.order("cancelled");
                tracing::info!(order = %c.order_id, "order cancelled");
            }
            Err(why) => {
                metrics.order("cancel_ignored");
                tracing::warn!(order = %c.order_id, %why, "cancel changed nothing");
            }
        },
        Ok(OrderMessage::SetStock(s)) => {
            let update = StockUpdate {
                sku: s.sku.clone(),
                change: StockChange::Set(i64::from(s.on_hand)),
                reason: StockReason::Cloud,
                note: None,
            };
            match writer.change_stock(update).await? {
                Ok(after) => {
                    metrics.order("stock_set");
                    tracing::info!(sku = %s.sku, on_hand = after.on_hand, "stock set by the store system");
                }
                Err(why) => {
                    metrics.order("stock_refused");
                    tracing::warn!(sku = %s.sku, %why, "stock count refused");
                }
            }
        }
        Err(OrderMessageError::Invalid { order_id, reason }) => {
            metrics.order("rejected_invalid");
            tracing::warn!(order = %order_id, %reason, "invalid order rejected");
            writer.invalid_order(order_id.clone()).await?;
        }
        Err(e) => {
            metrics.order("garbled");
            tracing::warn!(error = %e, "order message dropped");
        }
    }
    Ok(())
}
