//! Claiming until the agent refuses: how the storage tests fill a store or a disk.

use std::future::Future;
use std::ops::Range;

use serde_json::Value;

/// Cracks eggs for shoppers `shopper-{i}`, `i` in `shoppers`, through `crack` until one is
/// answered `refusal`; returns how many were answered 201 before it (an i64, as the stores count), and the refusal's body
/// (`None` when the range ran out first). Any other status fails the test.
pub async fn until_refused<F, Fut>(
    shoppers: Range<usize>,
    refusal: u16,
    mut crack: F,
) -> (i64, Option<Value>)
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = (u16, Value)>,
{
    let mut answered = 0;
    for i in shoppers {
        let (status, body) = crack(format!("shopper-{i}")).await;
        match status {
            201 => answered += 1,
            s if s == refusal => return (answered, Some(body)),
            other => panic!("claim {i}: unexpected {other}: {body}"),
        }
    }
    (answered, None)
}
