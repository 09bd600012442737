//! The contact-state codec round-trips states built by the engine, and
//! rejects damaged records without panicking.

mod common;

use common::*;
use leadscore::event::{EmailAction, FieldValue};
use leadscore::state::{decode_contact, encode_contact, CodecError};
use proptest::prelude::*;

const RULES: &str = include_str!("../examples/rules.toml");

fn busy_contact(n: usize) -> Contact {
    let mut c = Contact::new(RULES);
    for i in 0..n {
        let t = at(i as f64 * 0.7);
        let id = format!("e{i}");
        match i % 6 {
            0 => c.apply(&visit(&id, "https://app.example/pricing", t)),
            1 => c.apply(&email(&id, &format!("em-{}", i % 3), EmailAction::Open, t)),
            2 => c.apply(&form(
                &id,
                "webinar-q1",
                &[
                    ("title", FieldValue::Text("VP".into())),
                    ("budget", FieldValue::Number(5000.0)),
                    ("email", FieldValue::Null),
                ],
                t,
            )),
            3 => c.apply(&purchase(&id, "pro", Some(900.0), t)),
            4 => c.apply(&visit(&id, "https://app.example/add-ons/sso", t)),
            _ => c.apply(&visit(&id, "https://app.example/docs/api", t)),
        };
    }
    c
}

#[test]
fn states_round_trip() {
    for n in [0, 1, 7, 200] {
        let c = busy_contact(n);
        let bytes = encode_contact(&c.state);
        assert_eq!(decode_contact(&bytes).unwrap(), c.state, "{n} events");
    }
}

/// The stored bytes of known states, digested. A change of the in-memory
/// types alone must not change them (or must bump `FORMAT` and keep reading
/// the old form); a change of what scoring keeps may, with a new digest here.
#[test]
fn stored_bytes_of_known_states_do_not_change() {
    for (n, len, digest) in [
        (1, 108, 0xf73d_ead9_ec9b_b8b5),
        (7, 362, 0xf08c_a91e_5080_d691),
        (200, 951, 0xe7f2_045d_7cb5_a7be),
    ] {
        let bytes = encode_contact(&busy_contact(n).state);
        assert_eq!(
            (bytes.len(), xxhash_rust::xxh3::xxh3_64(&bytes)),
            (len, digest),
            "{n} events"
        );
    }
}

/// A model's rule accumulators and tracked contributions are kept inline
/// up to a few and on the heap past that; either way they are stored as the
/// plain lists they were stored as before (the same bytes).
#[test]
fn inline_or_spilled_parts_are_stored_as_plain_lists() {
    use leadscore::scoring::state::{Contribution, RuleAcc};
    use leadscore::scoring::{ModelState, Prediction};
    use leadscore::time::EventTime;
    #[derive(serde::Serialize)]
    struct AsLists<'a> {
        tier: u32,
        fit: f64,
        ref_time: EventTime,
        decaying_total: f64,
        steady_total: f64,
        rules: &'a [RuleAcc],
        pending: Vec<Contribution>,
        unfolded: u32,
        next: &'a Option<Prediction>,
    }
    let (mut lens, mut spilled) = (Vec::new(), 0);
    for n in (0..60).step_by(3) {
        for ms in busy_contact(n).state.models.iter() {
            let plain = AsLists {
                tier: ms.tier,
                fit: ms.fit,
                ref_time: ms.ref_time,
                decaying_total: ms.decaying_total,
                steady_total: ms.steady_total,
                rules: &ms.rules,
                pending: ms.pending.to_vec(),
                unfolded: ms.unfolded,
                next: &ms.next,
            };
            let bytes = postcard::to_stdvec(&plain).unwrap();
            assert_eq!(postcard::to_stdvec(ms).unwrap(), bytes, "{n} events");
            assert_eq!(&postcard::from_bytes::<ModelState>(&bytes).unwrap(), ms);
            lens.push((ms.rules.len(), ms.pending.len()));
            spilled += usize::from(ms.pending.spilled());
        }
    }
    // Every case came up: none tracked, one or two inline, more spilled.
    assert!(lens.iter().any(|&(_, p)| p == 0), "{lens:?}");
    assert!(lens.iter().any(|&(_, p)| p == 1 || p == 2), "{lens:?}");
    assert!(spilled > 0, "{lens:?}");
}

#[test]
fn a_decoded_state_keeps_scoring_identically() {
    let mut a = busy_contact(50);
    let mut b = busy_contact(50);
    b.state = decode_contact(&encode_contact(&b.state)).unwrap();
    let next = visit("late", "https://app.example/pricing", at(40.0));
    assert_eq!(a.apply(&next), b.apply(&next));
    assert_eq!(a.run_until(at(400.0)), b.run_until(at(400.0)));
}

#[test]
fn damaged_records_are_errors() {
    let bytes = encode_contact(&busy_contact(20).state);
    assert_eq!(decode_contact(&[]), Err(CodecError::Empty));
    assert_eq!(
        decode_contact(&[9, 1, 2]),
        Err(CodecError::UnknownFormat(9))
    );
    assert!(matches!(
        decode_contact(&bytes[..bytes.len() / 2]),
        Err(CodecError::Corrupt(_))
    ));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut framed = vec![1u8];
        framed.extend(bytes);
        let _ = decode_contact(&framed);
    }
}
