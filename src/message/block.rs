//! The value of a Block1 or Block2 option: NUM, M and SZX
//! (<https://www.rfc-editor.org/rfc/rfc7959#section-2.2>).

use thiserror::Error;

/// A Block1/Block2 option value: block number, "more" flag and size exponent.
///
/// ```
/// use coapio::message::BlockValue;
/// let b = BlockValue::new(3, true, 6).unwrap();   // block 3 of 1024 bytes, more follow
/// assert_eq!(b.size(), 1024);
/// assert_eq!(b.offset(), 3072);
/// assert_eq!(BlockValue::from_uint(b.to_uint()), Ok(b));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockValue {
    /// The option's value (NUM << 4 | M << 3 | SZX) with bit 31 set: never zero, so that an
    /// `Option<BlockValue>` is four bytes that are all defined, `None` included.
    bits: std::num::NonZeroU32,
}

impl std::fmt::Debug for BlockValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockValue")
            .field("num", &self.num())
            .field("more", &self.more())
            .field("szx", &self.szx())
            .finish()
    }
}

/// Why a number is not a valid block option value.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockError {
    /// SZX 7 is reserved (it is BERT's in CoAP over TCP, RFC 8323).
    #[error("block size exponent 7 is reserved")]
    ReservedSzx,
    /// The block number does not fit in 20 bits.
    #[error("block number {0} does not fit in 20 bits")]
    NumTooLarge(u32),
    /// The option value is longer than 3 bytes.
    #[error("block option value of {0} bytes is longer than 3")]
    TooLong(usize),
}

impl BlockValue {
    /// The largest block number (2^20 − 1).
    pub const MAX_NUM: u32 = (1 << 20) - 1;

    /// A block value; `szx` 0–6 stands for 16 to 1024 bytes.
    ///
    /// # Errors
    ///
    /// [`BlockError::ReservedSzx`] for `szx` above 6, [`BlockError::NumTooLarge`] for `num`
    /// above [`Self::MAX_NUM`].
    pub const fn new(num: u32, more: bool, szx: u8) -> Result<Self, BlockError> {
        if szx > 6 {
            return Err(BlockError::ReservedSzx);
        }
        if num > Self::MAX_NUM {
            return Err(BlockError::NumTooLarge(num));
        }
        let bits = (1 << 31) | (num << 4) | ((more as u32) << 3) | szx as u32;
        match std::num::NonZeroU32::new(bits) {
            Some(bits) => Ok(Self { bits }),
            None => Err(BlockError::NumTooLarge(num)), // unreachable: bit 31 is set
        }
    }

    /// Reads the option's unsigned integer value.
    ///
    /// # Errors
    ///
    /// As [`BlockValue::new`].
    pub const fn from_uint(v: u32) -> Result<Self, BlockError> {
        Self::new(v >> 4, v & 0x08 != 0, (v & 0x07) as u8)
    }

    /// Reads the option's raw value (0–3 bytes).
    ///
    /// # Errors
    ///
    /// [`BlockError::TooLong`] for more than 3 bytes, else as [`BlockValue::from_uint`].
    pub fn from_bytes(v: &[u8]) -> Result<Self, BlockError> {
        if v.len() > 3 {
            return Err(BlockError::TooLong(v.len()));
        }
        Self::from_uint(super::decode_uint(v).unwrap_or(0))
    }

    /// The option's unsigned integer value.
    pub const fn to_uint(self) -> u32 {
        self.bits.get() & !(1 << 31)
    }

    /// The block number.
    pub const fn num(self) -> u32 {
        self.to_uint() >> 4
    }

    /// Whether more blocks follow.
    pub const fn more(self) -> bool {
        self.bits.get() & 0x08 != 0
    }

    /// The size exponent: the block holds 2^(szx+4) bytes.
    pub const fn szx(self) -> u8 {
        (self.bits.get() & 0x07) as u8
    }

    /// The block size in bytes (16 to 1024).
    pub const fn size(self) -> usize {
        1 << (self.szx() + 4)
    }

    /// The offset of the block's first byte in the whole body.
    pub const fn offset(self) -> usize {
        self.num() as usize * self.size()
    }

    /// The size exponent of the largest block size not above `size` (clamped to 16–1024).
    pub const fn szx_for_size(size: usize) -> u8 {
        let mut szx = 6;
        while szx > 0 && (1usize << (szx + 4)) > size {
            szx -= 1;
        }
        szx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Option<BlockValue>` is one `NonZeroU32`, `None` being 0: no byte of it is ever
    /// undefined. When `None` left the block number's bytes undefined, the optimized server
    /// code tested them before the tag (harmlessly: both outcomes were the same), and valgrind
    /// reported it as "Conditional jump or move depends on uninitialised value(s)"
    /// (ffi/README.md, "valgrind").
    #[test]
    fn option_is_four_defined_bytes() {
        assert_eq!(size_of::<Option<BlockValue>>(), 4);
    }

    #[test]
    fn values() {
        assert_eq!(
            BlockValue::from_uint(0),
            Ok(BlockValue::new(0, false, 0).unwrap())
        );
        assert_eq!(BlockValue::from_uint(7), Err(BlockError::ReservedSzx));
        assert_eq!(
            BlockValue::new(1 << 20, false, 0),
            Err(BlockError::NumTooLarge(1 << 20))
        );
        assert_eq!(
            BlockValue::from_bytes(&[1, 2, 3, 4]),
            Err(BlockError::TooLong(4))
        );
        let b = BlockValue::from_bytes(&[0x2e]).unwrap(); // num 2, more, szx 6
        assert_eq!((b.num(), b.more(), b.szx(), b.size()), (2, true, 6, 1024));
        let max = BlockValue::new(BlockValue::MAX_NUM, true, 6).unwrap();
        assert_eq!(BlockValue::from_uint(max.to_uint()), Ok(max));
        assert_eq!(BlockValue::szx_for_size(1024), 6);
        assert_eq!(BlockValue::szx_for_size(1000), 5);
        assert_eq!(BlockValue::szx_for_size(4096), 6);
        assert_eq!(BlockValue::szx_for_size(1), 0);
    }
}
