//! A decoded `String` made a `CompactString` without a store-forwarding stall.
//!
//! `CompactString::from` copies a short text into a stack buffer with a
//! variable-length `memcpy` (byte-sized stores for a short text), and the
//! 24-byte value is then read back as whole words before those stores have
//! left the store buffer: the load cannot be forwarded and waits, ~15 ns a
//! field (replay decodes four or five such fields a line). [`compact`] reads
//! the text with whole-word loads and writes each word once.

use compact_str::CompactString;

/// Bytes in a `CompactString`: inline texts are 0 to 23 bytes of it, and its
/// last byte is then `0xC0 | length` (the layout of compact_str 0.9).
const SIZE: usize = 24;
const LENGTH_MARK: u64 = 0xC0;

const _: () = assert!(std::mem::size_of::<CompactString>() == SIZE);

/// `s` as a `CompactString`: the same value `CompactString::from(s)` gives
/// (tests compare them for every length, multi-byte characters included).
#[inline(always)]
pub fn compact(s: String) -> CompactString {
    let n = s.len();
    if n == 0 || n >= SIZE || cfg!(not(target_endian = "little")) {
        return CompactString::from(s);
    }
    let b = s.as_bytes();
    let mut words = [0u64; 3];
    match n {
        16.. => {
            words[0] = word(b, 0);
            words[1] = word(b, 8);
            words[2] = short(&b[16..]);
        }
        8.. => {
            words[0] = word(b, 0);
            words[1] = short(&b[8..]);
        }
        _ => words[0] = short(b),
    }
    words[2] |= (LENGTH_MARK | n as u64) << 56;
    drop(s);
    // SAFETY: `words` holds, in little-endian order, exactly the 24 bytes
    // compact_str 0.9 keeps for an inline text of `n` < 24 bytes: the text,
    // zeros, and `0xC0 | n` as the last byte (`InlineBuffer::new`). The text
    // is valid UTF-8, being a `String`'s. The tests below check the result
    // against `CompactString::from` for every inline length.
    unsafe { std::mem::transmute::<[u64; 3], CompactString>(words) }
}

/// Eight bytes of `b` from `at`, little-endian.
#[inline(always)]
fn word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The up to 8 bytes of `b`, little-endian, zero above, read with at most
/// two loads (overlapping when `b` is not 4 or 8 bytes long).
#[inline(always)]
fn short(b: &[u8]) -> u64 {
    let n = b.len();
    let half = |at: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&b[at..at + 4]);
        u64::from(u32::from_le_bytes(w))
    };
    match n {
        8.. => word(b, 0),
        4.. => half(0) | half(n - 4) << (8 * (n - 4)),
        1.. => {
            let byte = |at: usize| u64::from(b[at]) << (8 * at);
            byte(0) | byte(n / 2) | byte(n - 1)
        }
        0 => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every prefix of `text` that ends on a character boundary.
    fn prefixes(text: &str) -> impl Iterator<Item = &str> {
        (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .map(|i| &text[..i])
    }

    #[test]
    fn gives_what_compact_str_gives_for_every_length() {
        let texts = [
            "abcdefghijklmnopqrstuvwxyz0123456789",
            "é€😀aé€😀bé€😀cé€😀d",
            "\u{7f}\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}xyz",
        ];
        let mut lengths = std::collections::BTreeSet::new();
        for text in texts {
            for prefix in prefixes(text) {
                let ours = compact(prefix.to_string());
                let theirs = CompactString::from(prefix.to_string());
                assert_eq!(ours.as_str(), prefix);
                assert_eq!(ours, theirs, "{prefix:?}");
                assert_eq!(ours.is_heap_allocated(), theirs.is_heap_allocated());
                assert_eq!(ours.len(), prefix.len());
                lengths.insert(prefix.len());
            }
        }
        assert!((0..=30).all(|n| lengths.contains(&n)), "{lengths:?}");
    }

    #[test]
    fn a_text_built_here_can_grow_and_be_dropped() {
        let mut s = compact("short id".to_string());
        s.push_str(" grown past the inline limit");
        assert_eq!(s, "short id grown past the inline limit");
        assert!(s.is_heap_allocated());
    }
}
