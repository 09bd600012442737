use super::*;

#[test]
fn ids_are_stable_and_distinguish_causes() {
    let a = tier_change_id("c", "m", 5, "cold", "warm", &Cause::Decay);
    assert_eq!(
        a,
        tier_change_id("c", "m", 5, "cold", "warm", &Cause::Decay)
    );
    assert_eq!(a.len(), 32);
    let streamed = |parts: &[&[u8]]| {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for part in parts {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        format!("{:032x}", h.digest128())
    };
    let five = 5i64.to_le_bytes();
    assert_eq!(
        std::str::from_utf8(&a).unwrap(),
        streamed(&[b"c", b"m", &five, b"cold", b"warm", b"decay"]),
        "the digest in hex"
    );
    // Every cause, with parts that fit the hash's stack buffer and parts
    // that do not.
    for n in [1, 60, 200] {
        let long = "é".repeat(n);
        let causes: [(Cause, &[&[u8]]); 3] = [
            (
                Cause::Event {
                    topic: "page-visits".into(),
                    event_id: long.as_str().into(),
                },
                &[b"event", b"page-visits", long.as_bytes()],
            ),
            (
                Cause::Expiry {
                    rule: long.as_str().into(),
                },
                &[b"expiry", long.as_bytes()],
            ),
            (Cause::Inactivity, &[b"inactivity"]),
        ];
        for (cause, cause_parts) in causes {
            let id = tier_change_id(&long, "m", 5, "cold", "warm", &cause);
            let mut parts: Vec<&[u8]> = vec![long.as_bytes(), b"m", &five, b"cold", b"warm"];
            parts.extend_from_slice(cause_parts);
            assert_eq!(std::str::from_utf8(&id).unwrap(), streamed(&parts), "{n}");
        }
    }
    assert_ne!(
        a,
        tier_change_id("c", "m", 5, "cold", "warm", &Cause::Inactivity)
    );
    assert_ne!(
        a,
        tier_change_id("c", "m", 6, "cold", "warm", &Cause::Decay)
    );
    let e1 = Cause::Event {
        topic: "t".into(),
        event_id: "1".into(),
    };
    let e2 = Cause::Event {
        topic: "t1".into(),
        event_id: "".into(),
    };
    assert_ne!(
        tier_change_id("c", "m", 5, "a", "b", &e1),
        tier_change_id("c", "m", 5, "a", "b", &e2)
    );
}

#[test]
fn cause_serializes_as_in_the_spec() {
    let json = serde_json::to_string(&Cause::Expiry {
        rule: "webinar".into(),
    })
    .unwrap();
    assert_eq!(json, r#"{"kind":"expiry","rule":"webinar"}"#);
    assert_eq!(
        serde_json::to_string(&Cause::Decay).unwrap(),
        r#"{"kind":"decay"}"#
    );
}

#[test]
fn rounds_to_two_decimals_without_negative_zero() {
    assert_eq!(round2(23.996), 24.0);
    assert_eq!(round2(-0.001).to_string(), "0");
    assert_eq!(round2(-950.254), -950.25);
}

fn text() -> impl proptest::strategy::Strategy<Value = String> {
    proptest::prop_oneof![
        "[a-z0-9-]{0,12}",
        proptest::prelude::any::<String>(),
        "[\"\\\\\u{0}-\u{1f}\u{7f}é€a]{0,8}",
    ]
}

proptest::proptest! {
    /// The hand-written JSON is exactly serde's, escapes and numbers included.
    #[test]
    fn written_json_is_serdes(
        strings in proptest::collection::vec(text(), 10),
        score in proptest::prelude::any::<f64>(),
        previous in -1e6f64..1e6,
        cause_kind in 0u8..4,
        emitted in proptest::prelude::any::<bool>(),
    ) {
        let cause = match cause_kind {
            0 => Cause::Event { topic: strings[7].as_str().into(), event_id: strings[8].as_str().into() },
            1 => Cause::Decay,
            2 => Cause::Expiry { rule: strings[7].as_str().into() },
            _ => Cause::Inactivity,
        };
        let score = if score.is_finite() { score } else { 0.5 };
        let event = TierChanged {
            event_id: strings[0].as_str(),
            kind: "tier_changed",
            contact_id: &strings[1],
            model: &strings[2],
            from_tier: &strings[3],
            to_tier: &strings[4],
            direction: &strings[5],
            score,
            previous_score: round2(previous),
            at: &strings[6],
            cause: &cause,
            emitted_at: emitted.then_some(strings[9].as_str()),
        };
        let mut ours = Vec::new();
        event.write_json(&mut ours).unwrap();
        let theirs = serde_json::to_vec(&event).unwrap();
        proptest::prop_assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(theirs).unwrap());
    }
}

#[test]
fn long_lines_with_escapes_are_serdes() {
    for n in [100, 250, 251, 600] {
        let long = "a\"é\u{1}".repeat(n);
        let cause = Cause::Event {
            topic: long.as_str().into(),
            event_id: "e".into(),
        };
        let event = TierChanged {
            event_id: "id",
            kind: "tier_changed",
            contact_id: &long,
            model: "m",
            from_tier: "cold",
            to_tier: "warm",
            direction: "up",
            score: 1.5,
            previous_score: -1e300,
            at: "2026-01-01T00:00:00.000Z",
            cause: &cause,
            emitted_at: Some("x"),
        };
        let mut ours = Vec::new();
        event.write_json(&mut ours).unwrap();
        assert_eq!(ours, serde_json::to_vec(&event).unwrap(), "{n}");
    }
}

proptest::proptest! {
    #[test]
    fn needs_escape_is_exact(bytes in proptest::collection::vec(
        proptest::prop_oneof![0u8..0x40, 0x5au8..0x60, proptest::prelude::any::<u8>()], 0..40)) {
        let plain = bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        proptest::prop_assert_eq!(needs_escape(&bytes), plain);
    }
}

proptest::proptest! {
    /// Scores written by hand (whole numbers of cents, up to 10^13 in size)
    /// read exactly as serde writes them, and so do those next to them that
    /// serde writes instead.
    #[test]
    fn cents_are_written_as_serde_writes_them(
        cents in -1_000_000_000_000_000i64..1_000_000_000_000_000,
        nudge in proptest::prop_oneof![proptest::strategy::Just(0i64), -2i64..3],
    ) {
        let x = f64::from_bits(((cents as f64) / 100.0).to_bits().wrapping_add_signed(nudge));
        let mut line = Line::default();
        line.number(x);
        let serdes = serde_json::to_vec(&x).unwrap();
        proptest::prop_assert_eq!(line.bytes(), serdes.as_slice(), "{}", x);
    }
}

#[test]
fn zeros_and_the_edges_of_hand_written_numbers_are_serdes() {
    for x in [
        0.0,
        -0.0,
        0.01,
        -0.01,
        0.1,
        1.0,
        9_999_999_999_999.99,
        1e13,
        -1e13,
        1e15,
        5e-324,
    ] {
        let mut line = Line::default();
        line.number(x);
        assert_eq!(line.bytes(), serde_json::to_vec(&x).unwrap(), "{x}");
    }
}

/// The published line skips the escape check of what it makes itself
/// (id, type, direction, time); the names it takes from rules and events
/// are still escaped, and the whole is what serde writes.
#[test]
fn published_lines_are_serdes() {
    let cause = Cause::Event {
        topic: "visits\"\u{1}".into(),
        event_id: "e\\1".into(),
    };
    let change = Published {
        contact: "c\"1",
        model: "b2b\n",
        from: "cold\t",
        to: "warm",
        up: true,
        score: 31.999,
        previous_score: -0.004,
        at: EventTime::from_millis(1_767_225_600_123),
        cause: &cause,
    };
    for emitted_at in [None, Some("2026-01-01T00:00:00.000Z")] {
        let mut ours = Vec::new();
        change.write_json(&mut ours, emitted_at).unwrap();
        let id = tier_change_id("c\"1", "b2b\n", 1_767_225_600_123, "cold\t", "warm", &cause);
        let theirs = TierChanged {
            event_id: std::str::from_utf8(&id).unwrap(),
            kind: "tier_changed",
            contact_id: "c\"1",
            model: "b2b\n",
            from_tier: "cold\t",
            to_tier: "warm",
            direction: "up",
            score: 32.0,
            previous_score: 0.0,
            at: "2026-01-01T00:00:00.123Z",
            cause: &cause,
            emitted_at,
        };
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            serde_json::to_string(&theirs).unwrap()
        );
    }
}
