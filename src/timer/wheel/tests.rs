use super::*;
use crate::timer::DenseIndex;

#[test]
fn a_dense_index_fixes_each_keys_entry_and_keeps_one_bit_for_it() {
    let mut index = DenseIndex::new(3);
    assert_eq!(index.fixed_entry(&(5, 2)), Some(17));
    assert_eq!(index.get(&(5, 2)), None);
    index.insert((5, 2), 17);
    index.insert((70, 0), 210);
    assert_eq!(
        (index.get(&(5, 2)), index.get(&(70, 0))),
        (Some(17), Some(210))
    );
    assert_eq!(index.len(), 2);
    assert_eq!(index.keys(), vec![(5, 2), (70, 0)]);
    assert_eq!(index.remove(&(5, 2)), Some(17));
    assert_eq!((index.remove(&(5, 2)), index.get(&(5, 2))), (None, None));
    assert_eq!(index.len(), 1);
}

#[test]
fn a_wheel_on_a_dense_index_keeps_each_timer_at_its_keys_entry() {
    let mut wheel = TimerWheel::with_index(EventTime::from_millis(0), DenseIndex::new(2));
    wheel.insert((3, 1), EventTime::from_millis(50));
    wheel.insert((0, 0), EventTime::from_millis(90));
    assert_eq!(wheel.entries.len(), 8);
    assert_eq!(wheel.entries[7].key, Some((3, 1)));
    assert_eq!(wheel.entries[0].key, Some((0, 0)));
    wheel.cancel(&(3, 1));
    wheel.insert((1, 0), EventTime::from_millis(70));
    assert_eq!(wheel.entries[2].key, Some((1, 0)));
    assert_eq!(wheel.entries[7].key, None);
    assert!(wheel.free.is_empty(), "fixed entries are never pooled");
    let mut out = Vec::new();
    wheel.poll(EventTime::from_millis(100), &mut out);
    let fired: Vec<_> = out.iter().map(|(t, k)| (t.millis(), *k)).collect();
    assert_eq!(fired, vec![(70, (1, 0)), (90, (0, 0))]);
    assert!(wheel.is_empty());
}
