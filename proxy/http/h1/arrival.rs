//! How bytes come off a socket, for the parsers' property tests: all at
//! once, in pieces cut anywhere, or in even pieces down to a byte at a
//! time. The parsers must give the same answer whichever way.

use std::ops::Range;

use proptest::prelude::*;
use proptest::sample::Index;

#[derive(Debug, Clone)]
pub enum Arrival {
    /// At once, or cut at these places (empty pieces included: a read that
    /// gave nothing new still calls the parser again).
    Cuts(Vec<Index>),
    /// In pieces of this many bytes (1: a byte at a time).
    Every(usize),
}

impl Arrival {
    pub const WHOLE: Arrival = Arrival::Cuts(Vec::new());

    /// The pieces `len` bytes arrive in, in order; the last ends at `len`.
    pub fn pieces(&self, len: usize) -> Vec<Range<usize>> {
        let mut ends: Vec<usize> = match self {
            Arrival::Cuts(cuts) => cuts.iter().map(|cut| cut.index(len + 1)).collect(),
            Arrival::Every(size) => (*size..len).step_by(*size).collect(),
        };
        ends.push(len);
        ends.sort_unstable();
        let mut start = 0;
        ends.into_iter()
            .map(|end| {
                let piece = start..end;
                start = end;
                piece
            })
            .collect()
    }
}

pub fn arrival() -> impl Strategy<Value = Arrival> {
    prop_oneof![
        4 => prop::collection::vec(any::<Index>(), 0..12).prop_map(Arrival::Cuts),
        1 => prop_oneof![Just(1usize), 2usize..64].prop_map(Arrival::Every),
    ]
}
