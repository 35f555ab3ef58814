use super::*;
use crate::catalogue::{Daypart, Quota, Text};
use jiff::civil::Time;
use proptest::prelude::*;

fn offer(id: &str, kind: OfferKind) -> Offer {
    let title = Text {
        zh: "蛋".into(),
        en: "egg".into(),
    };
    Offer::new(id, "b", kind, title)
}

fn tp() -> Touchpoint {
    Touchpoint {
        device: caidan_sync::contract::Name::new("cinema-01").unwrap(),
        scene: Scene::Cinema,
        region: "cn-sh".into(),
        capabilities: BTreeSet::new(),
    }
}

fn shanghai() -> TimeZone {
    TimeZone::get("Asia/Shanghai").unwrap()
}

fn at(s: &str) -> Moment {
    Moment::new(s.parse().unwrap(), &shanghai())
}

fn pick(
    engine: &EggEngine,
    m: &Moment,
    s: &ShopperView,
    book: &QuotaBook,
    stock: &HashMap<String, i64>,
    seed: u64,
) -> Pick {
    engine.choose(m, &engine.pool(m), s, book, stock, seed)
}

fn claim(
    engine: &EggEngine,
    book: &mut QuotaBook,
    m: &Moment,
    shopper: &ShopperView,
    seed: u64,
) -> Pick {
    let pick = pick(engine, m, shopper, book, &HashMap::new(), seed);
    if let Pick::Offer(i) | Pick::Fallback(Some(i)) = pick {
        let id = &engine.rule(i).id;
        let next = book.get(id).bumped(m.today(), m.hour());
        book.set(id, next);
    }
    pick
}

#[test]
fn dayparts_are_read_in_the_device_time_zone() {
    let mut morning = offer("morning", OfferKind::Coupon);
    morning.dayparts = vec![Daypart {
        start: Time::constant(6, 0, 0, 0),
        end: Time::constant(11, 0, 0, 0),
    }];
    let engine = EggEngine::new(vec![morning, offer("story", OfferKind::Content)], tp());
    let s = ShopperView::default();
    let book = QuotaBook::default();
    // 01:30 UTC is 09:30 in Shanghai: morning.
    assert_eq!(
        pick(
            &engine,
            &at("2026-11-23T01:30:00Z"),
            &s,
            &book,
            &HashMap::new(),
            1
        ),
        Pick::Offer(0)
    );
    // 12:00 UTC is 20:00 in Shanghai.
    assert_eq!(
        pick(
            &engine,
            &at("2026-11-23T12:00:00Z"),
            &s,
            &book,
            &HashMap::new(),
            1
        ),
        Pick::Fallback(Some(1))
    );
}

#[test]
fn targeting_by_scene_region_segment_capability_and_stock() {
    let mut o = vec![
        offer("campus", OfferKind::Coupon),
        offer("bj", OfferKind::Coupon),
    ];
    o[0].scenes = vec![Scene::Campus];
    o[1].regions = vec!["cn-bj".into()];
    let mut student = offer("student", OfferKind::Coupon);
    student.segments = vec!["student".into()];
    let mut sample = offer("sample", OfferKind::FreeSample);
    sample.requires = vec![Capability::Dispenser];
    sample.sku = Some("crisps".into());
    o.push(student);
    o.push(sample);
    let mut vending = tp();
    vending.capabilities.insert(Capability::Dispenser);
    let engine = EggEngine::new(o.clone(), vending);
    let m = at("2026-11-23T06:00:00Z");
    let book = QuotaBook::default();
    let anyone = ShopperView::default();
    let student = ShopperView {
        segments: vec!["student".into()],
        ..Default::default()
    };
    let no_stock = HashMap::new();
    let stock = HashMap::from([("crisps".to_string(), 1i64)]);
    assert_eq!(
        pick(&engine, &m, &anyone, &book, &no_stock, 3),
        Pick::Fallback(None)
    );
    assert_eq!(
        pick(&engine, &m, &student, &book, &no_stock, 3),
        Pick::Offer(0),
        "campus and cn-bj offers are not candidates here: rules are [student, sample]"
    );
    assert_eq!(engine.rules().len(), 2);
    assert_eq!(pick(&engine, &m, &anyone, &book, &stock, 3), Pick::Offer(1));
    // Without the dispenser the sample is not a candidate at all.
    let engine = EggEngine::new(o, tp());
    assert_eq!(
        pick(&engine, &m, &anyone, &book, &stock, 3),
        Pick::Fallback(None)
    );
}

#[test]
fn yesterdays_offer_steps_aside_when_another_is_eligible() {
    let engine = EggEngine::new(
        vec![offer("a", OfferKind::Coupon), offer("b", OfferKind::Coupon)],
        tp(),
    );
    let m = at("2026-11-23T06:00:00Z");
    let book = QuotaBook::default();
    for seed in 0..50 {
        let s = ShopperView {
            previous_offer: Some("a".into()),
            ..Default::default()
        };
        assert_eq!(
            pick(&engine, &m, &s, &book, &HashMap::new(), seed),
            Pick::Offer(1)
        );
    }
    let only = EggEngine::new(vec![offer("a", OfferKind::Coupon)], tp());
    let s = ShopperView {
        previous_offer: Some("a".into()),
        ..Default::default()
    };
    assert_eq!(
        pick(&only, &m, &s, &book, &HashMap::new(), 9),
        Pick::Offer(0)
    );
}

#[test]
fn even_pacing_holds_back_a_daily_quota_in_the_morning() {
    let mut o = offer("paced", OfferKind::Coupon);
    o.quota.per_device_per_day = Some(240);
    o.pacing = Pacing::Even;
    let engine = EggEngine::new(vec![o], tp());
    let mut book = QuotaBook::default();
    // 09:00-10:00 local: the cinema curve expects 1 in 99 of the day's traffic.
    let m = at("2026-11-23T01:10:00Z");
    let mut given = 0;
    for n in 0..240 {
        if let Pick::Offer(_) = claim(&engine, &mut book, &m, &ShopperView::default(), n) {
            given += 1;
        }
    }
    assert!(
        given > 0 && given <= 5,
        "gave {given} in a quiet morning hour"
    );
}

proptest! {
    #[test]
    fn quotas_are_never_exceeded(
        total in proptest::option::of(1u32..40),
        daily in proptest::option::of(1u32..30),
        per_shopper in proptest::option::of(1u32..4),
        even in any::<bool>(),
        scans in proptest::collection::vec((0u32..20, 0i64..(3 * 24 * 60)), 1..300),
    ) {
        let mut o = offer("q", OfferKind::Coupon);
        o.quota = Quota { total, per_device_per_day: daily, per_shopper };
        if even && daily.is_some() { o.pacing = Pacing::Even; }
        let engine = EggEngine::new(vec![o, offer("story", OfferKind::Content)], tp());
        let mut book = QuotaBook::default();
        let mut per_shopper_count: HashMap<u32, u32> = HashMap::new();
        let mut per_day: HashMap<Date, u32> = HashMap::new();
        let mut scans = scans;
        scans.sort_by_key(|s| s.1);
        let start: Timestamp = "2026-11-23T00:00:00Z".parse().unwrap();
        for (n, (shopper, minute)) in scans.into_iter().enumerate() {
            let m = Moment::new(start + jiff::SignedDuration::from_mins(minute), &shanghai());
            let view = ShopperView {
                claimed: HashMap::from([("q".to_string(), per_shopper_count.get(&shopper).copied().unwrap_or(0))]),
                ..Default::default()
            };
            if claim(&engine, &mut book, &m, &view, n as u64) == Pick::Offer(0) {
                *per_shopper_count.entry(shopper).or_default() += 1;
                *per_day.entry(m.today()).or_default() += 1;
            }
        }
        let given = book.get("q").total;
        if let Some(t) = total { prop_assert!(given <= t); }
        if let Some(d) = daily { prop_assert!(per_day.values().all(|&c| c <= d)); }
        if let Some(p) = per_shopper { prop_assert!(per_shopper_count.values().all(|&c| c <= p)); }
    }

    #[test]
    fn choice_is_reproducible_for_a_seed(seed in any::<u64>(), weights in proptest::collection::vec(1u32..100, 1..20)) {
        let offers: Vec<Offer> = weights.iter().enumerate().map(|(i, w)| {
            let mut o = offer(&format!("o{i}"), OfferKind::Coupon);
            o.weight = *w;
            o
        }).collect();
        let engine = EggEngine::new(offers, tp());
        let m = at("2026-11-23T06:00:00Z");
        let a = pick(&engine, &m, &ShopperView::default(), &QuotaBook::default(), &HashMap::new(), seed);
        let b = pick(&engine, &m, &ShopperView::default(), &QuotaBook::default(), &HashMap::new(), seed);
        prop_assert_eq!(a, b);
        prop_assert!(matches!(a, Pick::Offer(_)));
    }
}
