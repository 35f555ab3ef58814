use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::*;

const SKUS: [&str; 3] = ["cola", "chips", "gum"];

fn units(sku: &str, qty: u32) -> Units {
    Units {
        sku: sku.into(),
        qty,
    }
}

#[test]
fn reserve_is_all_or_nothing() {
    let mut b = StockBook::default();
    b.apply("cola", b.plan_adjust("cola", 3, true).unwrap());
    b.apply("chips", b.plan_adjust("chips", 1, true).unwrap());
    let lines = vec![units("cola", 2), units("chips", 2)];
    assert_eq!(
        b.reserve("o1", lines, 100),
        Err(Refused(OrderRejection::OutOfStock))
    );
    assert_eq!(b.level("cola").unwrap().reserved, 0);
    assert_eq!(
        b.reserve("o1", vec![units("tea", 1)], 100),
        Err(Refused(OrderRejection::UnknownSku))
    );
    b.reserve("o1", vec![units("cola", 2), units("chips", 1)], 100)
        .unwrap();
    assert_eq!(b.level("cola").unwrap().available(), 1);
    assert_eq!(b.level("chips").unwrap().available(), 0);
}

#[test]
fn a_partial_dispense_keeps_the_rest_reserved() {
    let mut b = StockBook::default();
    b.apply("cola", b.plan_adjust("cola", 5, true).unwrap());
    b.reserve("o1", vec![units("cola", 3)], 100).unwrap();
    assert!(b.set_dispensing("o1", true));
    assert!(b.due(1_000).is_empty(), "not expired mid-dispense");
    assert_eq!(
        b.hand_over("o1", &[units("cola", 1)]),
        Some(vec![units("cola", 2)])
    );
    assert_eq!(
        b.level("cola").unwrap(),
        Level {
            on_hand: 4,
            reserved: 2
        }
    );
    assert_eq!(b.due(1_000), vec!["o1".to_string()]);
    assert_eq!(
        b.hand_over("o1", &[units("cola", 3)]),
        None,
        "more than held"
    );
    assert_eq!(b.hand_over("o1", &[units("cola", 2)]), Some(vec![]));
    assert!(b.hold("o1").is_none());
    assert_eq!(
        b.level("cola").unwrap(),
        Level {
            on_hand: 2,
            reserved: 0
        }
    );
}

#[test]
fn stock_cannot_go_below_what_is_reserved() {
    let mut b = StockBook::default();
    b.apply("cola", b.plan_adjust("cola", 2, true).unwrap());
    b.reserve("o1", vec![units("cola", 2)], 100).unwrap();
    assert!(matches!(
        b.plan_adjust("cola", -1, false),
        Err(StockRefusal::BelowReserved { reserved: 2, .. })
    ));
    assert!(matches!(
        b.plan_set("tea", 4, false),
        Err(StockRefusal::UnknownSku(_))
    ));
    assert!(matches!(
        b.plan_set("cola", 2_000_000, false),
        Err(StockRefusal::TooMany { .. })
    ));
}

#[derive(Debug, Clone)]
enum Op {
    Receive(usize, u32),
    Damage(usize, u32),
    Count(usize, u32),
    Order(u8, Vec<(usize, u32)>, i64),
    Egg(u8, usize, i64),
    Cancel(u8),
    Pickup(u8),
    DispenseStart(u8),
    /// Hands over this many units of the first line (0: a jam), then ends the dispense.
    DispenseEnd(u8, u32),
    Tick(i64),
}

fn op() -> impl Strategy<Value = Op> {
    let sku = 0..SKUS.len();
    prop_oneof![
        (sku.clone(), 1u32..6).prop_map(|(s, q)| Op::Receive(s, q)),
        (sku.clone(), 1u32..3).prop_map(|(s, q)| Op::Damage(s, q)),
        (sku.clone(), 0u32..8).prop_map(|(s, q)| Op::Count(s, q)),
        (
            0u8..12,
            prop::collection::vec((sku.clone(), 1u32..4), 1..3),
            0i64..50
        )
            .prop_map(|(id, l, e)| Op::Order(id, l, e)),
        (0u8..12, sku, 0i64..50).prop_map(|(id, s, e)| Op::Egg(id, s, e)),
        (0u8..12).prop_map(Op::Cancel),
        (0u8..12).prop_map(Op::Pickup),
        (0u8..12).prop_map(Op::DispenseStart),
        (0u8..12, 0u32..3).prop_map(|(id, q)| Op::DispenseEnd(id, q)),
        (1i64..10).prop_map(Op::Tick),
    ]
}

/// What an observer outside the book counts.
#[derive(Default)]
struct Ledger {
    received: HashMap<&'static str, u64>,
    handed_over: HashMap<&'static str, u64>,
    expired: HashSet<String>,
    now: i64,
}

fn check(b: &StockBook, ledger: &Ledger) {
    for sku in SKUS {
        let Some(level) = b.level(sku) else { continue };
        assert!(level.reserved <= level.on_hand, "{sku}: {level:?}");
        let held: u32 = b
            .holds
            .values()
            .flat_map(|h| &h.lines)
            .filter(|l| l.sku == sku)
            .map(|l| l.qty)
            .sum();
        assert_eq!(
            level.reserved, held,
            "{sku}: reserved is what the holds hold"
        );
        let received = ledger.received.get(sku).copied().unwrap_or(0);
        let given = ledger.handed_over.get(sku).copied().unwrap_or(0);
        assert!(
            u64::from(level.reserved) + given <= received,
            "{sku}: reserved {} + handed over {given} > received {received}",
            level.reserved
        );
    }
    for (t, id) in &b.by_expiry {
        assert_eq!(b.holds[id].expires_ms, *t);
    }
    assert_eq!(b.by_expiry.len(), b.holds.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any interleaving of orders, egg holds, cancels, pickups, dispenses with jams,
    /// expiries and stock changes keeps available >= 0 and reserved + handed over <=
    /// received, and expires each hold once.
    #[test]
    fn any_interleaving_keeps_the_stock_whole(ops in prop::collection::vec(op(), 1..120)) {
        let mut b = StockBook::default();
        let mut l = Ledger::default();
        // Ids used by a hold that closed are never reused (the store refuses them).
        let mut closed: HashSet<String> = HashSet::new();
        for op in ops {
            match op {
                Op::Receive(s, q) => {
                    let level = b.plan_adjust(SKUS[s], i64::from(q), true).unwrap();
                    b.apply(SKUS[s], level);
                    *l.received.entry(SKUS[s]).or_default() += u64::from(q);
                }
                Op::Damage(s, q) => {
                    if let Ok(level) = b.plan_adjust(SKUS[s], -i64::from(q), false) {
                        b.apply(SKUS[s], level);
                    }
                }
                Op::Count(s, n) => {
                    let before = b.level(SKUS[s]).map_or(0, |x| x.on_hand);
                    if let Ok(level) = b.plan_set(SKUS[s], i64::from(n), true) {
                        b.apply(SKUS[s], level);
                        if n > before {
                            *l.received.entry(SKUS[s]).or_default() += u64::from(n - before);
                        }
                    }
                }
                Op::Order(id, lines, e) => {
                    let id = format!("o{id}");
                    // The same SKU may come twice: the book merges the lines.
                    let lines: Vec<Units> = lines.into_iter().map(|(s, q)| units(SKUS[s], q)).collect();
                    if b.hold(&id).is_none() && !closed.contains(&id) {
                        let _ = b.reserve(&id, lines, l.now + e);
                    }
                }
                Op::Egg(id, s, e) => {
                    let id = format!("egg-{id}");
                    if b.hold(&id).is_none() && !closed.contains(&id) {
                        let _ = b.reserve(&id, vec![units(SKUS[s], 1)], l.now + e);
                    }
                }
                Op::Cancel(id) => {
                    let id = format!("o{id}");
                    if b.hold(&id).is_some_and(|h| !h.dispensing) && b.release(&id).is_some() {
                        closed.insert(id);
                    }
                }
                Op::Pickup(id) => {
                    let id = format!("o{id}");
                    if let Some(h) = b.hold(&id).filter(|h| !h.dispensing).cloned() {
                        prop_assert_eq!(b.hand_over(&id, &h.lines), Some(vec![]));
                        for line in &h.lines {
                            *l.handed_over.entry(SKUS.iter().find(|s| **s == line.sku).unwrap()).or_default() += u64::from(line.qty);
                        }
                        closed.insert(id);
                    }
                }
                Op::DispenseStart(id) => {
                    let id = format!("o{id}");
                    if b.hold(&id).is_some_and(|h| !h.dispensing) {
                        prop_assert!(b.set_dispensing(&id, true));
                    }
                }
                Op::DispenseEnd(id, q) => {
                    let id = format!("o{id}");
                    if let Some(h) = b.hold(&id).filter(|h| h.dispensing).cloned() {
                        let first = &h.lines[0];
                        let given = q.min(first.qty);
                        if given == 0 {
                            b.set_dispensing(&id, false);
                        } else {
                            let left = b.hand_over(&id, &[units(&first.sku, given)]).unwrap();
                            *l.handed_over.entry(SKUS.iter().find(|s| **s == first.sku).unwrap()).or_default() += u64::from(given);
                            if left.is_empty() {
                                closed.insert(id);
                            }
                        }
                    }
                }
                Op::Tick(dt) => {
                    l.now += dt;
                    for id in b.due(l.now) {
                        let h = b.release(&id).expect("a due hold is open");
                        prop_assert!(h.expires_ms <= l.now);
                        prop_assert!(!h.dispensing);
                        prop_assert!(l.expired.insert(id.clone()), "{} expired twice", id);
                        closed.insert(id);
                    }
                }
            }
            check(&b, &l);
        }
    }
}
