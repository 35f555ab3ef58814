//! Data bank counters, rendered in the Prometheus text format on `/metrics`.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters shared by the ingest loop, the writer and the HTTP API.
#[derive(Debug, Default)]
pub struct Metrics {
    pub batches_stored: AtomicU64,
    pub events_stored: AtomicU64,
    pub events_duplicate: AtomicU64,
    /// Events whose time was placed on the bank's clock (their device's clock not believed).
    pub events_retimed: AtomicU64,
    pub acks_published: AtomicU64,
    pub state_updates: AtomicU64,
    pub store_errors: AtomicU64,
    pub transactions: AtomicU64,
    /// Connections made to the broker (1 in a steady run; more after outages).
    pub broker_connects: AtomicU64,
    /// Subscriptions the broker confirmed (one SUBACK per connection).
    pub broker_subscribes: AtomicU64,
    /// 1 once the NATS queue subscription for event batches is in place.
    pub nats_subscribed: AtomicU64,
    rejected: Mutex<Vec<(&'static str, u64)>>,
    dead_letters: Mutex<Vec<(&'static str, u64)>>,
}

fn bump(list: &Mutex<Vec<(&'static str, u64)>>, reason: &'static str) {
    let mut r = list.lock().unwrap_or_else(|e| e.into_inner());
    match r.iter_mut().find(|(k, _)| *k == reason) {
        Some((_, n)) => *n += 1,
        None => r.push((reason, 1)),
    }
}

fn get(list: &Mutex<Vec<(&'static str, u64)>>, reason: &str) -> u64 {
    let r = list.lock().unwrap_or_else(|e| e.into_inner());
    r.iter().find(|(k, _)| *k == reason).map_or(0, |(_, n)| *n)
}

impl Metrics {
    /// Counts one rejected batch under `reason`.
    pub fn reject(&self, reason: &'static str) {
        bump(&self.rejected, reason);
    }

    /// Batches rejected for `reason` so far.
    pub fn rejected(&self, reason: &str) -> u64 {
        get(&self.rejected, reason)
    }

    /// Counts one message or event set aside under `reason`.
    pub fn dead_letter(&self, reason: &'static str) {
        bump(&self.dead_letters, reason);
    }

    /// Dead letters kept for `reason` so far.
    pub fn dead_letters(&self, reason: &str) -> u64 {
        get(&self.dead_letters, reason)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = [
            (
                "caidan_databank_batches_stored_total",
                "Event batches committed.",
                &self.batches_stored,
            ),
            (
                "caidan_databank_events_stored_total",
                "Events newly stored.",
                &self.events_stored,
            ),
            (
                "caidan_databank_events_duplicate_total",
                "Events already stored (redeliveries).",
                &self.events_duplicate,
            ),
            (
                "caidan_databank_events_retimed_total",
                "Events whose time was placed on the data bank's clock from their run's uptime.",
                &self.events_retimed,
            ),
            (
                "caidan_databank_broker_connects_total",
                "Connections made to the broker.",
                &self.broker_connects,
            ),
            (
                "caidan_databank_broker_subscribes_total",
                "Event and state subscriptions the broker confirmed.",
                &self.broker_subscribes,
            ),
            (
                "caidan_databank_acks_published_total",
                "Acknowledgements published.",
                &self.acks_published,
            ),
            (
                "caidan_databank_state_updates_total",
                "Device state messages stored.",
                &self.state_updates,
            ),
            (
                "caidan_databank_store_errors_total",
                "Failed store transactions.",
                &self.store_errors,
            ),
            (
                "caidan_databank_transactions_total",
                "Store transactions committed.",
                &self.transactions,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Relaxed)
            );
        }
        let name = "caidan_databank_batches_rejected_total";
        let _ = writeln!(
            out,
            "# HELP {name} Batches dropped as invalid, by reason.\n# TYPE {name} counter"
        );
        let r = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        for (reason, n) in r.iter() {
            let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
        }
        drop(r);
        let name = "caidan_databank_dead_letters_total";
        let _ = writeln!(
            out,
            "# HELP {name} Messages and events set aside, by reason.\n# TYPE {name} counter"
        );
        let d = self.dead_letters.lock().unwrap_or_else(|e| e.into_inner());
        for (reason, n) in d.iter() {
            let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_reasons() {
        let m = Metrics::default();
        m.events_stored.fetch_add(3, Relaxed);
        m.reject("garbled");
        m.reject("garbled");
        let text = m.render();
        assert!(text.contains("caidan_databank_events_stored_total 3"));
        assert!(text.contains("caidan_databank_batches_rejected_total{reason=\"garbled\"} 2"));
        assert_eq!(m.rejected("garbled"), 2);
    }
}
