//! `fleet status`: every device's retained state, one row each.

use crate::fleet::FleetError;
use crate::fleet::status::Row;

use super::{Session, open_and_read};

/// Reads every device's retained state; rows sorted by device id.
pub async fn status(session: &Session) -> Result<Vec<Row>, FleetError> {
    let (conn, snapshot) = open_and_read(session, None, false).await?;
    conn.close().await;
    let now = jiff::Timestamp::now();
    Ok(snapshot
        .states
        .iter()
        .map(|(d, s)| Row::new(d, s, now))
        .collect())
}
