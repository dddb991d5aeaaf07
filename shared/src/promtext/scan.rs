//! Byte-scanning primitives of the parser's hot path: a class table looked up once per byte and
//! a word-at-a-time search for the bytes that end a label value or a line. Safe code only; the
//! word search reads 8 bytes as one `u64` (SWAR) instead of branching on each.

pub(crate) const NAME_START: u8 = 1;
pub(crate) const NAME_REST: u8 = 1 << 1;
pub(crate) const LABEL_START: u8 = 1 << 2;
pub(crate) const LABEL_REST: u8 = 1 << 3;
pub(crate) const SPACE: u8 = 1 << 4;
pub(crate) const TAB: u8 = 1 << 5;
pub(crate) const CR: u8 = 1 << 6;
pub(crate) const NEWLINE: u8 = 1 << 7;

const fn byte_classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let alpha = c.is_ascii_alphabetic() || c == b'_';
        let mut class = 0;
        if alpha || c == b':' {
            class |= NAME_START | NAME_REST;
        }
        if c.is_ascii_digit() {
            class |= NAME_REST | LABEL_REST;
        }
        if alpha {
            class |= LABEL_START | LABEL_REST;
        }
        class |= match c {
            b' ' => SPACE,
            b'\t' => TAB,
            b'\r' => CR,
            b'\n' => NEWLINE,
            _ => 0,
        };
        table[b] = class;
        b += 1;
    }
    table
}

static CLASSES: [u8; 256] = byte_classes();

#[inline]
pub(crate) fn has_class(b: u8, class: u8) -> bool {
    CLASSES[usize::from(b)] & class != 0
}

/// The first offset at or after `pos` whose byte is not in `class` (or the input's end).
#[inline]
pub(crate) fn skip_class(input: &[u8], pos: usize, class: u8) -> usize {
    match input.get(pos..) {
        Some(rest) => {
            pos + rest
                .iter()
                .position(|&b| !has_class(b, class))
                .unwrap_or(rest.len())
        }
        None => pos,
    }
}

/// The first offset at or after `pos` whose byte is in `class` (or the input's end).
#[inline]
pub(crate) fn find_class(input: &[u8], pos: usize, class: u8) -> usize {
    match input.get(pos..) {
        Some(rest) => {
            pos + rest
                .iter()
                .position(|&b| has_class(b, class))
                .unwrap_or(rest.len())
        }
        None => pos,
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `word` equal to `byte`. Bytes above the first match may be
/// flagged falsely (borrow), so only the lowest flag is meaningful — which is all we use.
#[inline]
fn matches(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The first offset at or after `pos` holding `a`, `b` or `c` (or the input's end).
#[inline]
pub(crate) fn find3(input: &[u8], pos: usize, a: u8, b: u8, c: u8) -> usize {
    let Some(rest) = input.get(pos..) else {
        return pos;
    };
    let mut chunks = rest.chunks_exact(8);
    let mut offset = 0;
    for chunk in chunks.by_ref() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let word = u64::from_le_bytes(bytes);
        let hits = matches(word, a) | matches(word, b) | matches(word, c);
        if hits != 0 {
            return pos + offset + (hits.trailing_zeros() / 8) as usize;
        }
        offset += 8;
    }
    let tail = chunks.remainder();
    pos + offset
        + tail
            .iter()
            .position(|&x| x == a || x == b || x == c)
            .unwrap_or(tail.len())
}

/// How many leading bytes `a` and `b` have in common, compared a word at a time.
#[inline]
pub(crate) fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let mut same = 0;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let mut words = [[0u8; 8]; 2];
        words[0].copy_from_slice(x);
        words[1].copy_from_slice(y);
        let diff = u64::from_le_bytes(words[0]) ^ u64::from_le_bytes(words[1]);
        if diff != 0 {
            return same + (diff.trailing_zeros() / 8) as usize;
        }
        same += 8;
    }
    let tail = a.get(same..).unwrap_or_default();
    same + tail
        .iter()
        .zip(b.get(same..).unwrap_or_default())
        .take_while(|(x, y)| x == y)
        .count()
}

/// The offset of the next `\n` at or after `pos` (or the input's end).
#[inline]
pub(crate) fn line_end(input: &[u8], pos: usize) -> usize {
    find3(input, pos, b'\n', b'\n', b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find3_returns_the_first_match_wherever_it_falls_in_a_word() {
        let text = b"abcdefghijklmnop\"qrstuvwx\\yz\n";
        for start in 0..text.len() {
            let expected = text
                .iter()
                .skip(start)
                .position(|&x| x == b'"' || x == b'\\' || x == b'\n')
                .map_or(text.len(), |p| start + p);
            assert_eq!(find3(text, start, b'"', b'\\', b'\n'), expected, "{start}");
        }
        assert_eq!(find3(b"abc", 0, b'"', b'\\', b'\n'), 3);
        assert_eq!(find3(b"abc", 9, b'"', b'\\', b'\n'), 9);
    }

    #[test]
    fn high_bytes_next_to_a_match_do_not_confuse_the_word_search() {
        let text = [0xffu8, 0x80, 0x22, 0x01, 0x00, 0x5c, 0xfe, 0x0a, 0x22];
        assert_eq!(find3(&text, 0, b'"', b'\\', b'\n'), 2);
        assert_eq!(find3(&text, 3, b'"', b'\\', b'\n'), 5);
        assert_eq!(line_end(&text, 0), 7);
    }

    #[test]
    fn common_prefix_finds_the_first_difference_in_or_after_the_words() {
        let a = b"engine=\"0\",le=\"0.5\",model_name=\"q\"";
        for cut in 0..a.len() {
            let mut b = a.to_vec();
            b[cut] ^= 1;
            assert_eq!(common_prefix(a, &b), cut);
        }
        assert_eq!(common_prefix(a, a), a.len());
        assert_eq!(common_prefix(a, &a[..5]), 5);
        assert_eq!(common_prefix(b"", a), 0);
    }

    #[test]
    fn class_scans_stop_at_the_first_byte_outside_or_inside_the_class() {
        let text = b"vllm:x_total{a=\"b\"} 1";
        assert_eq!(skip_class(text, 0, NAME_REST), 12);
        assert_eq!(find_class(text, 0, SPACE | NEWLINE), 19);
        assert_eq!(skip_class(text, 40, NAME_REST), 40);
    }
}
