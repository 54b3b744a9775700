//! The local members of one room ([`super::rooms`]): a table keyed by connection id, laid out for rooms
//! of tens of thousands of sockets on one worker.
//!
//! Why not `HashMap<u64, Member>`: a hashbrown table keeps a power of two of buckets, each the key, the
//! value and a control byte, at most 7/8 full — 19,000 members took 32,768 buckets × 49 B, 84.5 B per
//! member (perf/vs-peers.md, "Memory per socket"). Here the members themselves lie densely in chunks of
//! [`CHUNK`] (a full chunk is never reallocated or copied; at most one is partly empty), and the index
//! from connection id to position is a table of `u32` positions: at 19,000 members 41 B + 6.9 B per
//! member. The key is not stored: it is read from the member ([`Keyed`]), which costs a pointer read
//! per probe of a lookup (a removal, a catch-up, a personal result) and none on a fan-out.
//!
//! Order: iteration is in insertion order, except that a removal moves the last member into the hole
//! (`swap_remove`). Nothing may rely on an order (the hash map's was arbitrary); every reference to a
//! member from outside is its key, never its position.

/// Members per chunk (40 B each: 40 KB a chunk). The first chunk grows by doubling up to this, so a
/// room of a few players holds a few slots, not a chunk.
pub const CHUNK: usize = 1024;

/// Smallest index table (slots).
const MIN_SLOTS: usize = 8;

/// Something stored under a `u64` key that it knows itself.
pub trait Keyed {
    fn key(&self) -> u64;
}

/// A map from `u64` key to `T` (see the module's doc for its layout).
pub struct Members<T> {
    /// `len` members: member `i` is `chunks[i / CHUNK][i % CHUNK]`; every chunk but the last is full.
    chunks: Vec<Vec<T>>,
    len: usize,
    /// Open addressing with linear probing: `0` an empty slot, else a member's position + 1. Its length
    /// is a power of two (or zero when there is no member), at most 3/4 full.
    slots: Vec<u32>,
    /// The last full-size chunk that emptied, kept for the next one needed (capacity 0: none): a room
    /// whose size hovers at a multiple of [`CHUNK`] does not free and allocate a chunk on every
    /// leave and join across it.
    spare: Vec<T>,
}

impl<T> Default for Members<T> {
    fn default() -> Self {
        Members {
            chunks: Vec::new(),
            len: 0,
            slots: Vec::new(),
            spare: Vec::new(),
        }
    }
}

/// Fibonacci hashing: connection ids are a per-worker counter (worker::next_conn_id), so consecutive
/// ids land far apart; they are chosen by the edge, not by a client, so no keyed hash is needed.
fn home(key: u64, slots: usize) -> usize {
    debug_assert!(slots.is_power_of_two());
    let bits = slots.trailing_zeros();
    if bits == 0 {
        return 0;
    }
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
}

/// The number of index slots for `len` members: a power of two, at most 3/4 full.
fn slots_for(len: usize) -> usize {
    (len + len / 3 + 1).next_power_of_two().max(MIN_SLOTS)
}

impl<T: Keyed> Members<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn at(&self, pos: usize) -> &T {
        &self.chunks[pos / CHUNK][pos % CHUNK]
    }

    fn at_mut(&mut self, pos: usize) -> &mut T {
        &mut self.chunks[pos / CHUNK][pos % CHUNK]
    }

    /// The index slot that holds `key`, if any.
    fn find(&self, key: u64) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = home(key, self.slots.len());
        loop {
            match self.slots[i] {
                0 => return None,
                p if self.at(p as usize - 1).key() == key => return Some(i),
                _ => i = (i + 1) & mask,
            }
        }
    }

    /// The index slot that holds position `pos`, whose member has `key`.
    fn slot_of(&self, key: u64, pos: usize) -> usize {
        let mask = self.slots.len() - 1;
        let mut i = home(key, self.slots.len());
        while self.slots[i] as usize != pos + 1 {
            debug_assert!(self.slots[i] != 0, "a member without an index slot");
            i = (i + 1) & mask;
        }
        i
    }

    pub fn get(&self, key: u64) -> Option<&T> {
        self.find(key).map(|i| self.at(self.slots[i] as usize - 1))
    }

    pub fn get_mut(&mut self, key: u64) -> Option<&mut T> {
        let i = self.find(key)?;
        let pos = self.slots[i] as usize - 1;
        Some(self.at_mut(pos))
    }

    /// Stores `member` under its key; returns the member it replaces.
    pub fn insert(&mut self, member: T) -> Option<T> {
        let key = member.key();
        if let Some(i) = self.find(key) {
            let pos = self.slots[i] as usize - 1;
            return Some(std::mem::replace(self.at_mut(pos), member));
        }
        if slots_for(self.len + 1) > self.slots.len() {
            self.reindex(slots_for(self.len + 1));
        }
        let pos = self.len;
        let slot = u32::try_from(pos + 1).expect("a room of fewer than 2^32 local members");
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => {
                if c.len() == c.capacity() {
                    // the first chunk doubles up to CHUNK; later ones are allocated whole
                    c.reserve_exact((c.capacity() * 2).clamp(4, CHUNK) - c.len());
                }
                c.push(member)
            }
            _ => {
                if self.chunks.capacity() == 0 {
                    self.chunks.reserve_exact(1); // most rooms never need a second chunk
                }
                let mut c = if self.chunks.is_empty() {
                    Vec::with_capacity(4)
                } else if self.spare.capacity() == CHUNK {
                    std::mem::take(&mut self.spare)
                } else {
                    Vec::with_capacity(CHUNK)
                };
                c.push(member);
                self.chunks.push(c);
            }
        }
        self.len += 1;
        let mask = self.slots.len() - 1;
        let mut i = home(key, self.slots.len());
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
        None
    }

    /// Removes the member under `key`; the last member takes its position.
    pub fn remove(&mut self, key: u64) -> Option<T> {
        let hole = self.find(key)?;
        let pos = self.slots[hole] as usize - 1;
        self.unindex(hole);
        let last = self.len - 1;
        if pos != last {
            let moved = self.at(last).key();
            let i = self.slot_of(moved, last);
            self.slots[i] = pos as u32 + 1;
        }
        let tail = self.chunks.last_mut().expect("a member");
        let mut gone = tail.pop().expect("a member");
        if tail.is_empty() {
            let emptied = self.chunks.pop().expect("a chunk");
            if !self.chunks.is_empty() && emptied.capacity() == CHUNK {
                self.spare = emptied;
            }
        }
        if pos != last {
            std::mem::swap(self.at_mut(pos), &mut gone);
        }
        self.len -= 1;
        if self.len == 0 {
            *self = Members::default();
        } else if self.len < self.slots.len() / 8 {
            self.spare = Vec::new();
            self.reindex(slots_for(self.len));
            if let [first] = &mut self.chunks[..] {
                if first.len() * 4 < first.capacity() {
                    first.shrink_to(first.len() * 2);
                }
            }
        }
        Some(gone)
    }

    /// Empties index slot `i` (backward-shift deletion: no tombstones, probe runs stay unbroken).
    fn unindex(&mut self, mut i: usize) {
        let mask = self.slots.len() - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            if self.slots[j] == 0 {
                break;
            }
            let k = home(self.at(self.slots[j] as usize - 1).key(), self.slots.len());
            // the entry at j may fill the hole at i unless its home lies cyclically in (i, j]
            let stays = if i <= j {
                i < k && k <= j
            } else {
                i < k || k <= j
            };
            if !stays {
                self.slots[i] = self.slots[j];
                i = j;
            }
        }
        self.slots[i] = 0;
    }

    /// Rebuilds the index with `n` slots.
    fn reindex(&mut self, n: usize) {
        let mut slots = vec![0u32; n];
        let mask = n - 1;
        for pos in 0..self.len {
            let mut i = home(self.at(pos).key(), n);
            while slots[i] != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = pos as u32 + 1;
        }
        self.slots = slots;
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks.iter_mut().flatten()
    }

    /// Bytes this table holds on the heap (the chunks' and the index's capacity), for tests and probes.
    pub fn heap_bytes(&self) -> usize {
        let chunks: usize =
            self.chunks.iter().map(Vec::capacity).sum::<usize>() + self.spare.capacity();
        chunks * std::mem::size_of::<T>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<T>>()
            + self.slots.capacity() * std::mem::size_of::<u32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone, PartialEq)]
    struct M {
        id: u64,
        seq: u64,
        pad: [u64; 3],
    }

    impl Keyed for M {
        fn key(&self) -> u64 {
            self.id
        }
    }

    fn m(id: u64, seq: u64) -> M {
        M {
            id,
            seq,
            pad: [0; 3],
        }
    }

    /// Every member is found under its key, iteration yields each once, and nothing else is found.
    fn check(t: &Members<M>, model: &HashMap<u64, u64>) {
        assert_eq!(t.len(), model.len());
        for (k, v) in model {
            assert_eq!(t.get(*k).map(|m| m.seq), Some(*v), "key {k}");
        }
        let mut seen: Vec<u64> = t.iter().map(|m| m.id).collect();
        seen.sort_unstable();
        let mut want: Vec<u64> = model.keys().copied().collect();
        want.sort_unstable();
        assert_eq!(seen, want);
        if !model.is_empty() {
            assert!(t.slots.len() * 3 >= t.len() * 4, "index at most 3/4 full");
        }
    }

    /// A socket id as the edge makes them: worker 3, then a counter.
    fn conn_id(n: u64) -> u64 {
        (3 << 48) | n
    }

    #[test]
    fn joins_leaves_and_rejoins_keep_every_member_under_its_connection_id() {
        let mut t = Members::default();
        let mut model = HashMap::new();
        // a pseudo-random mix of joins (new ids and repeats), updates and leaves, past several chunks
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for step in 0..40_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = conn_id(x % 5_000);
            match x % 7 {
                0..=3 => {
                    let old = t.insert(m(id, step));
                    assert_eq!(old.map(|o| o.seq), model.insert(id, step));
                }
                4 => {
                    if let Some(v) = t.get_mut(id) {
                        v.seq += 1;
                    }
                    if let Some(v) = model.get_mut(&id) {
                        *v += 1;
                    }
                }
                _ => {
                    let gone = t.remove(id);
                    assert_eq!(gone.map(|g| g.seq), model.remove(&id));
                }
            }
            if step % 997 == 0 {
                check(&t, &model);
            }
        }
        check(&t, &model);
        for id in model.keys().copied().collect::<Vec<_>>() {
            assert!(t.remove(id).is_some());
        }
        assert!(t.is_empty());
        assert_eq!(t.heap_bytes(), 0, "an empty room holds nothing");
    }

    #[test]
    fn iteration_is_join_order_and_a_leave_moves_the_last_member_into_its_place() {
        let mut t = Members::default();
        for n in 1..=5 {
            t.insert(m(conn_id(n), 0));
        }
        let order = |t: &Members<M>| t.iter().map(|m| m.id & 0xff).collect::<Vec<_>>();
        assert_eq!(order(&t), [1, 2, 3, 4, 5]);
        t.remove(conn_id(2));
        assert_eq!(order(&t), [1, 5, 3, 4]);
        t.insert(m(conn_id(4), 9)); // a rejoin replaces in place
        assert_eq!(order(&t), [1, 5, 3, 4]);
        assert_eq!(t.get(conn_id(4)).map(|m| m.seq), Some(9));
        for v in t.iter_mut() {
            v.seq = 7;
        }
        assert!(t.iter().all(|m| m.seq == 7));
    }

    #[test]
    fn nineteen_thousand_members_take_48_bytes_each_where_a_hash_map_took_84() {
        let mut t = Members::default();
        for n in 1..=19_000 {
            t.insert(m(conn_id(n), 0));
        }
        let per_member = t.heap_bytes() as f64 / 19_000.0;
        // 40 B members: 19 chunks of 1,024 (41.0 B a member) + 32,768 u32 slots (6.9 B) + 32 chunk `Vec`s
        assert!(per_member < 48.0, "{per_member} B per member");
        // hashbrown: 32,768 buckets × (8 B key + 40 B value + 1 control byte) = 84.5 B a member
        assert!(per_member * 1.75 < 32_768.0 * 49.0 / 19_000.0);
    }

    #[test]
    fn a_room_that_shrinks_gives_its_chunks_and_index_back() {
        let mut t = Members::default();
        for n in 1..=5_000 {
            t.insert(m(conn_id(n), 0));
        }
        let full = t.heap_bytes();
        for n in 1..=4_990 {
            t.remove(conn_id(n));
        }
        assert_eq!(t.len(), 10);
        assert!(t.heap_bytes() * 20 < full, "{} of {full}", t.heap_bytes());
        for n in 4_991..=5_000 {
            assert_eq!(t.get(conn_id(n)).map(|m| m.id), Some(conn_id(n)));
        }
    }

    #[test]
    fn a_room_hovering_at_a_chunk_boundary_keeps_its_emptied_chunk() {
        let mut t = Members::default();
        for n in 1..=2 * CHUNK as u64 + 1 {
            t.insert(m(conn_id(n), 0));
        }
        let with_third_chunk = t.heap_bytes();
        for round in 0..3 {
            // the third chunk empties (kept as the spare), then fills again from it
            t.remove(conn_id(2 * CHUNK as u64 + 1));
            assert_eq!(
                t.heap_bytes(),
                with_third_chunk,
                "round {round}: after the leave"
            );
            t.insert(m(conn_id(2 * CHUNK as u64 + 1), round));
            assert_eq!(
                t.heap_bytes(),
                with_third_chunk,
                "round {round}: after the join"
            );
            assert_eq!(t.len(), 2 * CHUNK + 1);
        }
    }

    #[test]
    fn a_small_room_holds_a_few_slots_not_a_chunk() {
        let mut t = Members::default();
        for n in 1..=3 {
            t.insert(m(conn_id(n), 0));
        }
        // 4 members of 40 B, one chunk's `Vec`, 8 index slots
        assert_eq!(t.heap_bytes(), 4 * 40 + 24 + 8 * 4);
    }
}
