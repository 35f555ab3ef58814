//! What the broker retains for a fleet, as an operator reads it: each device's last state
//! and the document on a target topic; and what a message on the fleet's topics means.

use std::collections::BTreeMap;

use caidan_sync::contract::{ConfigAck, ConfigDocument, Envelope, Name, StateMessage};
use caidan_sync::topics;

use super::Target;
use super::connection::Message;

/// A message of the fleet, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    State(Name, Box<StateMessage>),
    /// An empty retained state: the device's state was cleared.
    StateCleared(Name),
    Ack(Name, ConfigAck),
    /// On another topic (the target topic, a rollout topic).
    Other,
    /// Unreadable; the reason names the topic.
    Garbled(String),
}

/// Reads `m`, a message on one of `fleet`'s topics.
pub fn read(fleet: &str, m: &Message) -> Incoming {
    let Some((f, device, leaf)) = topics::parse_device_topic(&m.topic) else {
        return Incoming::Other;
    };
    if f != fleet {
        return Incoming::Other;
    }
    let Ok(device) = Name::new(device) else {
        return Incoming::Garbled(format!("{}: device id is not a name", m.topic));
    };
    match leaf {
        "state" if m.payload.is_empty() => Incoming::StateCleared(device),
        "state" => match StateMessage::parse(&m.payload) {
            Ok(s) => Incoming::State(device, Box::new(s)),
            Err(e) => Incoming::Garbled(format!("{}: {e}", m.topic)),
        },
        "config/ack" => match ConfigAck::parse(&m.payload) {
            Ok(a) => Incoming::Ack(device, a),
            Err(e) => Incoming::Garbled(format!("{}: {e}", m.topic)),
        },
        _ => Incoming::Other,
    }
}

/// The document a target topic retains.
#[derive(Debug, Clone, PartialEq)]
pub struct Retained {
    pub envelope: Envelope,
    pub document: ConfigDocument,
}

/// Devices' states and a target topic's document, from retained messages.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub states: BTreeMap<Name, StateMessage>,
    /// The target topic's document, when one was asked for and is retained.
    pub retained: Option<Retained>,
    /// The target topic held something that is not a readable document.
    pub unreadable: Option<String>,
    /// Messages that could not be read, with why.
    pub garbled: Vec<String>,
}

impl Snapshot {
    /// Builds the view of `fleet` from `messages`, reading `target_topic` as the document.
    pub fn build(fleet: &str, target_topic: Option<&str>, messages: &[Message]) -> Snapshot {
        let mut s = Snapshot::default();
        for m in messages {
            if Some(m.topic.as_str()) == target_topic {
                s.retained = None;
                s.unreadable = None;
                if m.payload.is_empty() {
                    continue;
                }
                match super::document::read_retained(&m.payload) {
                    Ok((envelope, document)) => s.retained = Some(Retained { envelope, document }),
                    Err(e) => s.unreadable = Some(e),
                }
                continue;
            }
            s.absorb(read(fleet, m));
        }
        s
    }

    /// Takes in a state (or its clearing); other messages are ignored here.
    pub fn absorb(&mut self, incoming: Incoming) {
        match incoming {
            Incoming::State(d, state) => {
                self.states.insert(d, *state);
            }
            Incoming::StateCleared(d) => {
                self.states.remove(&d);
            }
            Incoming::Garbled(why) => self.garbled.push(why),
            Incoming::Ack(..) | Incoming::Other => {}
        }
    }

    /// The devices that take `target`, sorted by id.
    pub fn in_scope(&self, target: &Target) -> Vec<(&Name, &StateMessage)> {
        self.states
            .iter()
            .filter(|(d, s)| target.includes(d, s))
            .collect()
    }

    /// The highest version of `target`'s layer any device reports applied.
    pub fn highest_reported(&self, fleet: &Name, target: &Target) -> Option<u64> {
        self.states
            .iter()
            .filter_map(|(d, s)| target.reported_version(fleet, d, s))
            .max()
    }

    /// The version the target topic retains.
    pub fn retained_version(&self) -> Option<u64> {
        self.retained.as_ref().map(|r| r.document.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caidan_sync::keys::SecretKey;

    fn msg(topic: &str, payload: &[u8]) -> Message {
        Message {
            topic: topic.to_owned(),
            payload: payload.to_vec(),
            retain: true,
        }
    }

    fn state(groups: &str, fleet: u64) -> Vec<u8> {
        format!(
            r#"{{"online":true,"profile":"kiosk","config_version":{fleet},"outbox_depth":0,"last_error":null,
                "groups":[{groups}],"config":{{"fleet":{fleet}}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn builds_states_and_the_retained_document() {
        let fleet = Name::new("demo").unwrap();
        let target = Target::Fleet;
        let doc = super::super::document::document(
            &fleet,
            &target.layer_id(&fleet),
            3,
            Default::default(),
            jiff::Timestamp::now(),
        );
        let signed = super::super::document::sign(doc, &SecretKey::generate()).unwrap();
        let topic = target.topic("demo");
        let messages = vec![
            msg("caidan/v1/demo/d/k2/state", &state(r#""north""#, 9)),
            msg("caidan/v1/demo/d/k1/state", &state("", 2)),
            msg("caidan/v1/demo/d/k3/state", b"{garbled"),
            msg("caidan/v1/demo/d/k4/state", &state("", 1)),
            msg("caidan/v1/demo/d/k4/state", b""),
            msg("caidan/v1/other/d/k5/state", &state("", 50)),
            msg(&topic, &signed.bytes),
        ];
        let s = Snapshot::build("demo", Some(&topic), &messages);
        let ids: Vec<&str> = s
            .in_scope(&Target::Fleet)
            .iter()
            .map(|(d, _)| d.as_str())
            .collect();
        assert_eq!(ids, vec!["k1", "k2"]);
        let north = Target::Group(Name::new("north").unwrap());
        assert_eq!(s.in_scope(&north).len(), 1);
        assert_eq!(s.highest_reported(&fleet, &Target::Fleet), Some(9));
        assert_eq!(s.retained_version(), Some(3));
        assert_eq!(s.garbled.len(), 1);
        assert!(s.garbled[0].contains("k3"));

        let cleared = Snapshot::build(
            "demo",
            Some(&topic),
            &[msg(&topic, &signed.bytes), msg(&topic, b"")],
        );
        assert!(cleared.retained.is_none() && cleared.unreadable.is_none());
        let bad = Snapshot::build("demo", Some(&topic), &[msg(&topic, b"nope")]);
        assert!(bad.unreadable.is_some());
    }

    #[test]
    fn reads_answers() {
        let ack =
            br#"{"layer":"fleet","target":"demo","version":2,"status":"applied","digest":"ab"}"#;
        match read("demo", &msg("caidan/v1/demo/d/k1/config/ack", ack)) {
            Incoming::Ack(d, a) => assert_eq!((d.as_str(), a.version), ("k1", Some(2))),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read("demo", &msg("caidan/v1/demo/d/k1/config/ack", b"[]")),
            Incoming::Garbled(_)
        ));
        assert_eq!(
            read("demo", &msg("caidan/v1/demo/config", b"x")),
            Incoming::Other
        );
    }
}
