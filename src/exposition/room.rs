//! Room made at the end of a render's output for a run of bytes whose length
//! is bounded beforehand.
//!
//! A line of the text formats is a few strings known before the render and
//! one number. Written piece by piece through `Vec::extend_from_slice`, every
//! piece checked the capacity and stored the length back; for a histogram's
//! bucket lines that bookkeeping was about as many instructions as the
//! copies. A [`Room`] is made once for a series' `_sum`, `_count` and bucket
//! lines, once for each other line, and once for each label block (every
//! piece's length is known but the numbers', and none of those is longer
//! than its bound); the pieces are copied into it with the position held in
//! a register, and what is left over is given back. (The OTLP encoder, whose
//! data points have few and fixed-size pieces, gained nothing from a room
//! per point: 41.90 M → 42.02 M instructions a render.)
//!
//! The room is the vector's spare capacity, written before it is counted as
//! part of the vector. Making it of zeros first (`resize`, no `unsafe`)
//! cost 2.9 M instructions in a 10,000-edge text render, 2.2 M of them in
//! `memset`: more than half of what the room saves (callgrind: 66.2 M
//! before, 64.2 M with zeros, 61.3 M without). Every write goes through a
//! bounds-checked slice of the room, so a bound too small panics rather than
//! writes past it.

use std::mem::MaybeUninit;

/// Bytes at the end of the output, written from the front.
pub(super) struct Room<'a> {
    buf: &'a mut [MaybeUninit<u8>],
    at: usize,
}

impl Room<'_> {
    /// Makes room for `bound` bytes at the end of `out` and hands it to `f`;
    /// what `f` does not write is given back.
    #[inline]
    pub(super) fn make(out: &mut Vec<u8>, bound: usize, f: impl FnOnce(&mut Room<'_>)) {
        out.reserve(bound);
        let start = out.len();
        let mut room = Room { buf: &mut out.spare_capacity_mut()[..bound], at: 0 };
        f(&mut room);
        let end = start + room.at;
        // SAFETY: `room` wrote its first `room.at` bytes, in order, each
        // through `put` or `byte`, and they are the spare capacity's first.
        unsafe { out.set_len(end) };
    }

    #[inline]
    pub(super) fn put(&mut self, s: &[u8]) {
        let dst = &mut self.buf[self.at..self.at + s.len()];
        // SAFETY: `dst` is `s.len()` bytes of the room, which `s`, a shared
        // borrow, cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), dst.as_mut_ptr().cast::<u8>(), s.len()) };
        self.at += s.len();
    }

    #[inline]
    pub(super) fn byte(&mut self, b: u8) {
        self.buf[self.at].write(b);
        self.at += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(bound: usize, f: impl FnOnce(&mut Room<'_>)) -> Vec<u8> {
        let mut out = b"head ".to_vec();
        Room::make(&mut out, bound, f);
        out
    }

    #[test]
    fn what_the_room_does_not_use_is_given_back() {
        assert_eq!(written(64, |r| r.put(b"abc")), b"head abc");
        assert_eq!(written(4, |r| r.put(b"abc")), b"head abc");
        let abcd = |r: &mut Room<'_>| {
            r.put(b"ab");
            r.byte(b'c');
            r.byte(b'd');
        };
        assert_eq!(written(4, abcd), b"head abcd");
        assert_eq!(written(8, |_| {}), b"head ");
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn writing_past_the_room_panics() {
        written(2, |r| r.put(b"abc"));
    }

    #[test]
    fn a_panic_inside_leaves_the_output_as_it_was() {
        let mut out = b"head ".to_vec();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Room::make(&mut out, 4, |r| {
                r.put(b"abc");
                r.put(b"de");
            })
        }));
        assert!(caught.is_err());
        assert_eq!(out, b"head ");
    }
}
