//! The uplink's bookkeeping without I/O, in the style of `quinn-proto`: the driver feeds it
//! events through `handle_*` (each given `now`), takes work from [`UplinkCore::poll_action`]
//! and sleeps until [`UplinkCore::poll_timeout`].
//!
//! Time is monotonic, as a [`Duration`] since the driver's clock started; the core never
//! reads a clock. Sequence numbers: records are read from the outbox in ascending `seq`; a
//! batch is a run of consecutive records. `acked` is the highest seq the data bank
//! acknowledged for our epoch; it never moves backwards, and a trim never goes past it.
//!
//! Policy lives here too: reconnect attempts with jittered exponential backoff, and
//! stepping aside for shoppers (while one claimed within `shopper_window`, outbox reads are
//! at least `shopper_yield` apart, so a backlog drains without taking the CPU from them).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::OutboxRecord;
pub use super::config::CoreConfig;
pub use super::outputs::{AckOutcome, Action, BatchSend, CoreStatus, Reconnect};
use crate::backoff::backoff;

/// A monotonic instant: time since the driver's clock started.
pub type Instant = Duration;

#[derive(Debug)]
struct InFlight {
    first: i64,
    last: i64,
    events: usize,
    payload: Arc<[u8]>,
    /// `None`: must be (re)sent as soon as connected.
    sent_at: Option<Instant>,
    attempts: u32,
}

/// The uplink state machine for one device and one store epoch.
#[derive(Debug)]
pub struct UplinkCore {
    cfg: CoreConfig,
    epoch: Uuid,
    connected: bool,
    connects: u64,
    failures: u32,
    reconnect_at: Option<Instant>,
    connected_at: Option<Instant>,
    last_shopper: Option<Instant>,
    acked: i64,
    /// Highest `through` handed out in a [`Action::Trim`].
    trim_requested: i64,
    trimming: bool,
    /// Highest `through` the outbox confirmed.
    trimmed: i64,
    trim_retry_at: Option<Instant>,
    /// Highest seq read from the outbox.
    read_through: i64,
    reading: Option<usize>,
    read_issued_at: Instant,
    /// Reads issued so far.
    reads: u64,
    /// A read held back for shoppers until then (set by the last `poll_action`).
    read_hold: Option<Instant>,
    /// The outbox may hold records past `read_through`.
    more: bool,
    woken_while_reading: bool,
    read_retry_at: Option<Instant>,
    unsent: VecDeque<OutboxRecord>,
    unsent_bytes: usize,
    oldest_unsent: Option<Instant>,
    in_flight: VecDeque<InFlight>,
    sent_through: i64,
    state_due: Option<Instant>,
    batches_sent: u64,
    batches_resent: u64,
}

impl UplinkCore {
    /// A core that will start by reading the outbox from its lowest record.
    /// Takes new batching and timing knobs (a config push); the backoff seed stays.
    pub fn set_config(&mut self, mut cfg: CoreConfig) {
        cfg.batch_max_events = cfg.batch_max_events.max(1);
        cfg.max_in_flight = cfg.max_in_flight.max(1);
        cfg.backoff_seed = self.cfg.backoff_seed;
        self.cfg = cfg;
    }

    pub fn new(mut cfg: CoreConfig, epoch: Uuid, now: Instant) -> Self {
        cfg.batch_max_events = cfg.batch_max_events.max(1);
        cfg.max_in_flight = cfg.max_in_flight.max(1);
        UplinkCore {
            cfg,
            epoch,
            connected: false,
            connects: 0,
            failures: 0,
            reconnect_at: None,
            connected_at: None,
            last_shopper: None,
            acked: 0,
            trim_requested: 0,
            trimming: false,
            trimmed: 0,
            trim_retry_at: None,
            read_through: 0,
            reading: None,
            read_issued_at: now,
            reads: 0,
            read_hold: None,
            more: true,
            woken_while_reading: false,
            read_retry_at: None,
            unsent: VecDeque::new(),
            unsent_bytes: 0,
            oldest_unsent: None,
            in_flight: VecDeque::new(),
            sent_through: 0,
            state_due: None,
            batches_sent: 0,
            batches_resent: 0,
        }
    }

    /// The store epoch acknowledgements must carry.
    pub fn epoch(&self) -> Uuid {
        self.epoch
    }

    /// Highest acknowledged seq.
    pub fn acked(&self) -> i64 {
        self.acked
    }

    pub fn status(&self) -> CoreStatus {
        CoreStatus {
            connected: self.connected,
            acked: self.acked,
            sent_through: self.sent_through,
            read_through: self.read_through,
            batches_in_flight: self.in_flight.len(),
            unsent_events: self.unsent.len(),
            batches_sent: self.batches_sent,
            batches_resent: self.batches_resent,
            connects: self.connects,
            failures: self.failures,
        }
    }

    /// The broker accepted our connection: everything unacknowledged goes out again, in order,
    /// and the state message is refreshed.
    pub fn handle_connected(&mut self, now: Instant) {
        self.connected = true;
        self.connects += 1;
        self.connected_at = Some(now);
        self.reconnect_at = None;
        for b in &mut self.in_flight {
            b.sent_at = None;
        }
        self.state_due = Some(now);
    }

    /// We closed the connection ourselves (shutdown).
    pub fn handle_disconnected(&mut self) {
        self.connected = false;
    }

    /// The connection failed or could not be made: the next attempt waits a jittered,
    /// doubling delay.
    pub fn handle_connection_lost(&mut self, now: Instant) -> Reconnect {
        self.connected = false;
        if self
            .connected_at
            .take()
            .is_some_and(|t| now >= t + self.cfg.stable_after)
        {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        let delay = backoff(
            self.failures,
            self.cfg.initial_backoff,
            self.cfg.max_backoff,
            self.cfg.backoff_seed,
        );
        self.reconnect_at = Some(now + delay);
        Reconnect {
            attempt: self.failures,
            delay,
        }
    }

    /// Whether the driver may try to connect now.
    pub fn may_connect(&self, now: Instant) -> bool {
        self.reconnect_at.is_none_or(|t| now >= t)
    }

    /// A shopper just claimed: background reads step aside for a while.
    pub fn handle_shopper_activity(&mut self, now: Instant) {
        self.last_shopper = Some(now);
    }

    /// When the next read may be issued, if shoppers hold it back.
    fn read_held_until(&self, now: Instant) -> Option<Instant> {
        let active = self
            .last_shopper
            .is_some_and(|t| now < t + self.cfg.shopper_window);
        let at = self.read_issued_at + self.cfg.shopper_yield;
        (active && self.reads > 0 && now < at).then_some(at)
    }

    /// New records were committed to the outbox.
    pub fn handle_wake(&mut self) {
        self.more = true;
        if self.reading.is_some() {
            self.woken_while_reading = true;
        }
    }

    /// Refresh the state message soon (for example, the config version changed).
    pub fn request_state(&mut self, now: Instant) {
        self.state_due = Some(now);
    }

    /// Result of an [`Action::Read`]: records with `seq > after`, ascending.
    pub fn handle_read(&mut self, _now: Instant, records: Vec<OutboxRecord>) {
        let max = self.reading.take().unwrap_or(usize::MAX);
        self.more = records.len() >= max || std::mem::take(&mut self.woken_while_reading);
        for r in records {
            // Defensive: a source returning old or unordered rows must not reorder the stream.
            if r.seq <= self.read_through {
                continue;
            }
            self.read_through = r.seq;
            self.unsent_bytes += r.json.len() + 1;
            self.unsent.push_back(r);
            self.oldest_unsent.get_or_insert(self.read_issued_at);
        }
    }

    pub fn handle_read_failed(&mut self, now: Instant) {
        self.reading = None;
        self.woken_while_reading = false;
        self.more = true;
        self.read_retry_at = Some(now + self.cfg.store_retry);
    }

    /// The outbox was trimmed through `through`.
    pub fn handle_trimmed(&mut self, through: i64) {
        debug_assert!(through <= self.acked);
        self.trimming = false;
        self.trimmed = self.trimmed.max(through);
    }

    /// The trim failed; it is retried (up to the then acknowledged seq) after a pause.
    pub fn handle_trim_failed(&mut self, now: Instant) {
        self.trimming = false;
        self.trim_requested = self.trimmed;
        self.trim_retry_at = Some(now + self.cfg.store_retry);
    }

    /// An acknowledgement from the data bank: `seq` is the highest contiguous seq it stored
    /// for `epoch`.
    pub fn handle_ack(&mut self, epoch: Uuid, seq: u64) -> AckOutcome {
        if epoch != self.epoch {
            return AckOutcome::ForeignEpoch;
        }
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        if seq <= self.acked {
            return AckOutcome::Stale;
        }
        // Never take an ack for records this run has not sent: trimming them would lose them
        // if the data bank were wrong. An ack covering more than we sent still proves what we sent.
        let to = seq.min(self.sent_through);
        if to <= self.acked {
            return AckOutcome::NotSent { claimed: seq };
        }
        let from = self.acked;
        self.acked = to;
        while self.in_flight.front().is_some_and(|b| b.last <= to) {
            self.in_flight.pop_front();
        }
        if seq > to {
            AckOutcome::Clamped {
                claimed: seq,
                from,
                to,
            }
        } else {
            AckOutcome::Advanced { from, to }
        }
    }

    /// The next piece of work, if any is due at `now`. Call until `None`.
    pub fn poll_action(&mut self, now: Instant) -> Option<Action> {
        // A reconnect delay that has passed is no longer a deadline to wake for; the
        // attempt itself is under way (or about to be).
        if self.reconnect_at.is_some_and(|t| now >= t) {
            self.reconnect_at = None;
        }
        if !self.trimming
            && self.acked > self.trim_requested
            && self.trim_retry_at.is_none_or(|t| now >= t)
        {
            self.trimming = true;
            self.trim_retry_at = None;
            self.trim_requested = self.acked;
            return Some(Action::Trim {
                through: self.acked,
            });
        }
        if self.connected {
            if let Some(send) = self.due_resend(now) {
                return Some(Action::Publish(send));
            }
            if self.in_flight.len() < self.cfg.max_in_flight && self.batch_ready(now) {
                return Some(Action::Publish(self.form_batch(now)));
            }
        }
        self.read_hold = None;
        if self.reading.is_none()
            && self.more
            && self.read_retry_at.is_none_or(|t| now >= t)
            && self.unsent.len() < self.cfg.batch_max_events
            && self.unsent_bytes < self.cfg.batch_max_bytes
        {
            if let Some(at) = self.read_held_until(now) {
                self.read_hold = Some(at);
                return self.poll_state(now);
            }
            let max = self.cfg.batch_max_events - self.unsent.len();
            self.reading = Some(max);
            self.read_retry_at = None;
            self.read_issued_at = now;
            self.reads += 1;
            return Some(Action::Read {
                after: self.read_through,
                max,
            });
        }
        self.poll_state(now)
    }

    fn poll_state(&mut self, now: Instant) -> Option<Action> {
        if self.connected && self.state_due.is_some_and(|t| now >= t) {
            self.state_due = Some(now + self.cfg.state_interval);
            return Some(Action::PublishState);
        }
        None
    }

    /// When [`UplinkCore::poll_action`] next has something to do, absent other events.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if !self.trimming && self.acked > self.trim_requested {
            consider(self.trim_retry_at);
        }
        if self.reading.is_none() && self.more {
            consider(self.read_retry_at);
            consider(self.read_hold);
        }
        if !self.connected {
            consider(self.reconnect_at);
        }
        if self.connected {
            for b in &self.in_flight {
                consider(b.sent_at.map(|t| t + self.cfg.ack_timeout));
            }
            if self.in_flight.len() < self.cfg.max_in_flight {
                consider(self.oldest_unsent.map(|t| t + self.cfg.linger));
            }
            consider(self.state_due);
        }
        next
    }

    fn due_resend(&mut self, now: Instant) -> Option<BatchSend> {
        let timeout = self.cfg.ack_timeout;
        let b = self
            .in_flight
            .iter_mut()
            .find(|b| b.sent_at.is_none_or(|t| now >= t + timeout))?;
        b.sent_at = Some(now);
        b.attempts += 1;
        self.batches_resent += 1;
        Some(BatchSend {
            first: b.first,
            last: b.last,
            events: b.events,
            attempt: b.attempts,
            payload: b.payload.clone(),
        })
    }

    fn batch_ready(&self, now: Instant) -> bool {
        !self.unsent.is_empty()
            && (self.unsent.len() >= self.cfg.batch_max_events
                || self.unsent_bytes + 1 >= self.cfg.batch_max_bytes
                || self
                    .oldest_unsent
                    .is_some_and(|t| now >= t + self.cfg.linger))
    }

    fn form_batch(&mut self, now: Instant) -> BatchSend {
        let mut payload = Vec::with_capacity(self.unsent_bytes.min(self.cfg.batch_max_bytes) + 1);
        payload.push(b'[');
        let mut events = 0;
        let (mut first, mut last) = (0, 0);
        while let Some(r) = self.unsent.front() {
            let fits = payload.len() + r.json.len() < self.cfg.batch_max_bytes;
            if events > 0 && (events >= self.cfg.batch_max_events || !fits) {
                break;
            }
            let r = self.unsent.pop_front().expect("front exists");
            self.unsent_bytes -= r.json.len() + 1;
            if events == 0 {
                first = r.seq;
            } else {
                payload.push(b',');
            }
            payload.extend_from_slice(r.json.as_bytes());
            last = r.seq;
            events += 1;
        }
        payload.push(b']');
        if self.unsent.is_empty() {
            self.oldest_unsent = None;
        }
        let payload: Arc<[u8]> = payload.into();
        self.sent_through = self.sent_through.max(last);
        self.batches_sent += 1;
        self.in_flight.push_back(InFlight {
            first,
            last,
            events,
            payload: payload.clone(),
            sent_at: Some(now),
            attempts: 1,
        });
        BatchSend {
            first,
            last,
            events,
            attempt: 1,
            payload,
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
