//! Fetching a catalogue a config document references: HTTPS only, no longer than declared
//! or than the storage budget allows, within the timeout, and only if its SHA-256 is the
//! one the document names.

use std::time::Duration;

use caidan_sync::contract::{RejectCode, Rejection};
use sha2::{Digest, Sha256};

use super::CatalogueRef;

/// Downloads `r` with `client`, stopping as soon as the body is longer than allowed.
pub async fn fetch(
    client: &reqwest::Client,
    r: &CatalogueRef,
    max_bytes: u64,
    timeout: Duration,
) -> Result<Vec<u8>, Rejection> {
    if !r.url.starts_with("https://") {
        return Err(Rejection::new(
            RejectCode::Invalid,
            "catalogue.url must be https://",
        ));
    }
    let want = r.sha256.to_ascii_lowercase();
    if want.len() != 64 || !want.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Rejection::new(
            RejectCode::Invalid,
            "catalogue.sha256 must be 64 hex digits",
        ));
    }
    if r.bytes > max_bytes {
        return Err(Rejection::new(
            RejectCode::TooLarge,
            format!(
                "catalogue of {} bytes is over the {max_bytes} bytes this device may take",
                r.bytes
            ),
        ));
    }
    let limit = r.bytes;
    let body = tokio::time::timeout(timeout, async {
        let failed = |e: reqwest::Error| {
            let code = if e.is_timeout() {
                RejectCode::FetchTimeout
            } else {
                RejectCode::FetchFailed
            };
            Rejection::new(code, format!("catalogue fetch: {e}"))
        };
        let mut resp = client.get(&r.url).send().await.map_err(failed)?;
        if !resp.status().is_success() {
            return Err(Rejection::new(
                RejectCode::FetchFailed,
                format!("catalogue fetch: HTTP {}", resp.status()),
            ));
        }
        let mut body = Vec::with_capacity(limit.min(1 << 20) as usize);
        while let Some(chunk) = resp.chunk().await.map_err(failed)? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(Rejection::new(
                    RejectCode::TooLarge,
                    format!("catalogue body is longer than the {limit} bytes declared"),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    })
    .await
    .map_err(|_| {
        Rejection::new(
            RejectCode::FetchTimeout,
            format!("catalogue not fetched within {} ms", timeout.as_millis()),
        )
    })??;
    let got = hex::encode(Sha256::digest(&body));
    if got != want {
        return Err(Rejection::new(
            RejectCode::HashMismatch,
            format!("catalogue SHA-256 is {got}, the document names {want}"),
        ));
    }
    Ok(body)
}
