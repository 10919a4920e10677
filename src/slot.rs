//! Key → slot: CRC16/XMODEM of the key (or of its `{hash tag}`) mod 16384. Pure.

use std::fmt;

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: usize = 16384;

/// One of the 16384 hash slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot(u16);

impl Slot {
    /// A slot from its number; `None` when it is 16384 or more.
    pub fn new(n: u16) -> Option<Slot> {
        ((n as usize) < SLOT_COUNT).then_some(Slot(n))
    }

    /// The slot a key hashes to.
    ///
    /// ```
    /// use slotgate::slot::Slot;
    /// assert_eq!(Slot::of_key(b"foo").get(), 12182);
    /// // Keys with the same `{hash tag}` share a slot.
    /// assert_eq!(Slot::of_key(b"{user1000}.following"), Slot::of_key(b"{user1000}.followers"));
    /// ```
    pub fn of_key(key: &[u8]) -> Slot {
        Slot(crc16(hash_tag(key)) & (SLOT_COUNT as u16 - 1))
    }

    pub fn get(self) -> u16 {
        self.0
    }

    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The part of the key that is hashed: the text between the first `{` and the
/// next `}` when that is non-empty, otherwise the whole key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = find_byte(key, b'{') {
        if let Some(len) = find_byte(&key[open + 1..], b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// Index of the first `byte` in `data`, eight bytes at a time: XOR makes the wanted
/// byte zero, and `(x - 0x01..) & !x & 0x80..` marks zero bytes. A borrow only runs
/// upwards from a zero byte, so the lowest mark (little-endian: the first byte in
/// memory) is always a true one. The frame scanners search lines with it too.
pub(crate) fn find_byte(data: &[u8], byte: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(byte);
    let mut chunks = data.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks of 8"));
        let x = word ^ pattern;
        let zeros = x.wrapping_sub(LO) & !x & HI;
        if zeros != 0 {
            return Some(at + (zeros.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let rest = chunks.remainder();
    rest.iter().position(|&b| b == byte).map(|i| at + i)
}

/// CRC16/XMODEM (polynomial 0x1021, init 0), as Redis Cluster specifies.
///
/// Eight bytes at a time ("slicing by 8"): byte-at-a-time CRC is one long chain of
/// dependent table loads, about 6 cycles a byte; here the eight loads of a block are
/// independent. `TABLES[k][x]` is the CRC of byte `x` followed by `k` zero bytes, and
/// CRC is linear, so a block's CRC is the XOR of one lookup per byte, with the running
/// CRC folded into the first two bytes. Keys are short, so this is a hot-path cost.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    let mut blocks = data.chunks_exact(8);
    for b in &mut blocks {
        let [hi, lo] = crc.to_be_bytes();
        crc = TABLES[7][(hi ^ b[0]) as usize]
            ^ TABLES[6][(lo ^ b[1]) as usize]
            ^ TABLES[5][b[2] as usize]
            ^ TABLES[4][b[3] as usize]
            ^ TABLES[3][b[4] as usize]
            ^ TABLES[2][b[5] as usize]
            ^ TABLES[1][b[6] as usize]
            ^ TABLES[0][b[7] as usize];
    }
    for &byte in blocks.remainder() {
        crc = (crc << 8) ^ TABLES[0][((crc >> 8) as u8 ^ byte) as usize];
    }
    crc
}

/// 4 KiB: stays in L1 while requests are being hashed.
static TABLES: [[u16; 256]; 8] = build_tables();

const fn build_tables() -> [[u16; 256]; 8] {
    let mut tables = [[0u16; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    // One more zero byte after byte x: feed the CRC so far through one more step.
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = tables[k - 1][i];
            tables[k][i] = (prev << 8) ^ tables[0][(prev >> 8) as usize];
            i += 1;
        }
        k += 1;
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_spec_vector() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    /// Bit by bit, straight from the definition.
    fn crc16_bitwise(data: &[u8]) -> u16 {
        let mut crc: u16 = 0;
        for &byte in data {
            crc ^= (byte as u16) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 {
                    (crc << 1) ^ 0x1021
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    #[test]
    fn crc16_matches_the_definition_at_every_length() {
        // Every length from 0 to 99 covers whole blocks of 8 and every remainder.
        let data: Vec<u8> = (0..100u32)
            .map(|i| (i.wrapping_mul(151) ^ (i >> 3)) as u8)
            .collect();
        for len in 0..data.len() {
            assert_eq!(
                crc16(&data[..len]),
                crc16_bitwise(&data[..len]),
                "length {len}"
            );
        }
        assert_eq!(crc16(&[0xff; 64]), crc16_bitwise(&[0xff; 64]));
    }

    #[test]
    fn known_slots() {
        // Values as `CLUSTER KEYSLOT` reports them.
        assert_eq!(Slot::of_key(b"foo").get(), 12182);
        assert_eq!(Slot::of_key(b"bar").get(), 5061);
        assert_eq!(Slot::of_key(b"").get(), 0);
        assert_eq!(Slot::of_key(b"somekey").get(), 11058);
    }

    #[test]
    fn hash_tags() {
        assert_eq!(
            Slot::of_key(b"{user1000}.following"),
            Slot::of_key(b"{user1000}.followers")
        );
        assert_eq!(
            Slot::of_key(b"{user1000}.following"),
            Slot::of_key(b"user1000")
        );
        // An empty tag hashes the whole key.
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        // Only the first tag counts.
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        // No closing brace: the whole key.
        assert_eq!(hash_tag(b"foo{bar"), b"foo{bar");
    }

    #[test]
    fn find_byte_agrees_with_a_plain_search() {
        // Bytes around the searched ones and with the high bit set, at every position
        // of keys up to 40 bytes, so each lane of a word and the tail are covered.
        let alphabet = [
            b'{',
            b'}',
            b'z',
            b'|',
            b'{' ^ 0x80,
            0x00,
            0xff,
            0x7a,
            0x01,
            b'a',
        ];
        let mut seed = 7u32;
        for len in 0..40 {
            for _ in 0..200 {
                let key: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        alphabet[(seed >> 16) as usize % alphabet.len()]
                    })
                    .collect();
                for byte in [b'{', b'}'] {
                    let plain = key.iter().position(|&b| b == byte);
                    assert_eq!(find_byte(&key, byte), plain, "{key:?} {byte}");
                }
            }
        }
    }

    #[test]
    fn slot_bounds() {
        assert!(Slot::new(16383).is_some());
        assert!(Slot::new(16384).is_none());
    }
}
