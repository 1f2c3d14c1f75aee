//! Decimal digits of an integer, written into the caller's buffer: no
//! allocation and no formatter run (the lock-file payload and the Linux
//! `/proc/self/fd/<n>` path are built on every acquire). Uses no other
//! module, so the platform layer and the payload writer both may.

/// The most digits a `u64` has.
pub const MAX_DIGITS: usize = 20;

/// Write `v` in decimal at the end of `buf`; returns where the digits start
/// (`buf[start..]` are the digits; the bytes before `start` are untouched,
/// so a buffer filled with `b'0'` gives zero padding).
pub fn write_u64(buf: &mut [u8; MAX_DIGITS], mut v: u64) -> usize {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_of_zero_small_and_largest() {
        for v in [0u64, 7, 10, 4_294_967_295, u64::MAX] {
            let mut buf = [b'x'; MAX_DIGITS];
            let start = write_u64(&mut buf, v);
            assert_eq!(&buf[start..], v.to_string().as_bytes());
            assert!(buf[..start].iter().all(|&b| b == b'x'));
        }
    }
}
