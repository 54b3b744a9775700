//! Checking the per-room `seq` of room events on one socket: every room event must arrive once, in order
//! (docs/protocol.md §5). The tracker counts what broke that promise:
//!
//! - **missed**: seqs skipped over and never seen afterwards (a gap that was not filled),
//! - **duplicate**: a seq seen twice,
//! - **out of order**: a seq that arrived after a higher one (it fills a gap: it is then not missed).
//!
//! The base is the `seq` the server stated when the socket joined (`room:join:ack.seq`,
//! `reconnect:state.seq`) or 0 for a room's creator: events after it must follow. Gaps are kept as a
//! short list of ranges, allocated only when a gap happens (never, on a healthy run).

/// What one observed seq was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The next one expected.
    InOrder,
    /// Ahead of the next expected: this many were skipped (maybe filled later).
    Gap(u64),
    /// Already seen (or at/below the base).
    Duplicate,
    /// Filled an earlier gap.
    OutOfOrder,
}

/// Per-socket room sequence checker.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    /// Highest seq seen (or the base).
    last: u64,
    /// Inclusive ranges skipped over and not yet seen.
    gaps: Vec<(u64, u64)>,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Seqs skipped on purpose because a `reconnect:state` snapshot replaced them.
    pub snapshot_skipped: u64,
}

impl SeqTracker {
    /// A tracker whose next expected seq is `base + 1`.
    pub fn with_base(base: u64) -> Self {
        SeqTracker {
            last: base,
            ..Default::default()
        }
    }

    /// The last seq processed, for `reconnect:attempt.lastSeq`.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The inclusive ranges skipped and not seen (yet).
    pub fn gaps(&self) -> &[(u64, u64)] {
        &self.gaps
    }

    /// Seqs skipped and never seen.
    pub fn missed(&self) -> u64 {
        self.gaps.iter().map(|(a, b)| b - a + 1).sum()
    }

    /// Records one room event's seq.
    pub fn observe(&mut self, seq: u64) -> Verdict {
        if seq == self.last + 1 {
            self.last = seq;
            return Verdict::InOrder;
        }
        if seq > self.last {
            let skipped = seq - self.last - 1;
            self.gaps.push((self.last + 1, seq - 1));
            self.last = seq;
            return Verdict::Gap(skipped);
        }
        // seq <= last: either it fills a gap or it was seen already.
        if let Some(pos) = self.gaps.iter().position(|&(a, b)| a <= seq && seq <= b) {
            let (a, b) = self.gaps[pos];
            match (seq == a, seq == b) {
                (true, true) => {
                    self.gaps.remove(pos);
                }
                (true, false) => self.gaps[pos].0 = seq + 1,
                (false, true) => self.gaps[pos].1 = seq - 1,
                (false, false) => {
                    self.gaps[pos].1 = seq - 1;
                    self.gaps.insert(pos + 1, (seq + 1, b));
                }
            }
            self.out_of_order += 1;
            Verdict::OutOfOrder
        } else {
            self.duplicates += 1;
            Verdict::Duplicate
        }
    }

    /// A snapshot (`reconnect:state`) says the room is at `seq`: everything up to it is covered by the
    /// snapshot, not missed. Returns how many seqs the snapshot stood in for.
    pub fn jump_to_snapshot(&mut self, seq: u64) -> u64 {
        let mut covered = 0;
        self.gaps.retain(|&(a, b)| {
            if b <= seq {
                covered += b - a + 1;
                false
            } else {
                true
            }
        });
        if seq > self.last {
            covered += seq - self.last;
            self.last = seq;
        }
        self.snapshot_skipped += covered;
        covered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(base: u64, seqs: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::with_base(base);
        for &s in seqs {
            t.observe(s);
        }
        t
    }

    #[test]
    fn an_in_order_stream_has_nothing_to_report() {
        let t = run(3, &[4, 5, 6, 7]);
        assert_eq!(
            (t.missed(), t.duplicates, t.out_of_order, t.last()),
            (0, 0, 0, 7)
        );
    }

    #[test]
    fn a_gap_that_is_never_filled_is_missed() {
        let t = run(0, &[1, 2, 5, 6, 9]);
        assert_eq!(t.missed(), 2 + 2);
        assert_eq!((t.duplicates, t.out_of_order), (0, 0));
    }

    #[test]
    fn a_late_event_is_out_of_order_not_missed() {
        let mut t = SeqTracker::with_base(0);
        assert_eq!(t.observe(1), Verdict::InOrder);
        assert_eq!(t.observe(4), Verdict::Gap(2));
        assert_eq!(t.observe(3), Verdict::OutOfOrder);
        assert_eq!(t.observe(2), Verdict::OutOfOrder);
        assert_eq!(t.observe(5), Verdict::InOrder);
        assert_eq!((t.missed(), t.out_of_order, t.duplicates), (0, 2, 0));
    }

    #[test]
    fn filling_the_middle_of_a_gap_splits_it() {
        let t = run(0, &[10, 5]);
        assert_eq!(t.missed(), 8, "1..=4 and 6..=9");
        let t = run(0, &[10, 5, 1, 9, 2, 3, 4, 6, 7, 8]);
        assert_eq!((t.missed(), t.out_of_order), (0, 9));
    }

    #[test]
    fn repeats_and_events_at_or_below_the_base_are_duplicates() {
        let t = run(5, &[6, 6, 5, 2, 7, 7]);
        assert_eq!((t.duplicates, t.missed(), t.out_of_order), (4, 0, 0));
        let t = run(0, &[1, 3, 2, 2]);
        assert_eq!((t.duplicates, t.out_of_order, t.missed()), (1, 1, 0));
    }

    #[test]
    fn a_snapshot_covers_the_gap_it_replaces() {
        let mut t = run(0, &[1, 2, 6]);
        assert_eq!(t.missed(), 3);
        assert_eq!(t.jump_to_snapshot(10), 3 + 4);
        assert_eq!((t.missed(), t.last()), (0, 10));
        assert_eq!(t.observe(11), Verdict::InOrder);
        assert_eq!(t.observe(9), Verdict::Duplicate);
    }
}
