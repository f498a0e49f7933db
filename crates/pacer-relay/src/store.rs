//! Page contents both ends of a relay connection keep, in the same slots.

use std::collections::HashMap;

use pacer_qemu::stream::PAGE;

/// A ring of page slots: the n-th page stored goes to slot n mod capacity, on
/// both ends, so a slot number means the same content on both.
#[derive(Debug)]
pub struct Ring {
    data: Vec<u8>,
    capacity: u32,
    next: u32,
    filled: u32,
}

impl Ring {
    /// A ring of `capacity` pages (at least one); memory is taken as it fills.
    pub fn new(capacity: u32) -> Ring {
        Ring { data: Vec::new(), capacity: capacity.max(1), next: 0, filled: 0 }
    }

    /// Stores a page in the next slot; returns the slot.
    pub fn push(&mut self, page: &[u8]) -> u32 {
        debug_assert_eq!(page.len(), PAGE);
        let slot = self.next;
        let at = slot as usize * PAGE;
        if at == self.data.len() {
            self.data.extend_from_slice(page);
        } else {
            self.data[at..at + PAGE].copy_from_slice(page);
        }
        self.next = (slot + 1) % self.capacity;
        self.filled = (self.filled + 1).min(self.capacity);
        slot
    }

    /// The slot that the next [`push`](Ring::push) overwrites.
    pub fn next_slot(&self) -> u32 {
        self.next
    }

    /// The page in `slot`, if one was stored there.
    pub fn get(&self, slot: u32) -> Option<&[u8]> {
        (slot < self.filled).then(|| &self.data[slot as usize * PAGE..(slot as usize + 1) * PAGE])
    }
}

/// The sender's side: the ring and an index from content hash to slot.
#[derive(Debug)]
pub struct SendStore {
    ring: Ring,
    by_hash: HashMap<u64, u32>,
    /// Hash of each filled slot (to forget it when the slot is overwritten).
    hashes: Vec<u64>,
}

/// What to send for a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The receiver has it in this slot.
    Ref(u32),
    /// New content: send it whole (the receiver stores it in the slot given).
    New(u32),
}

impl SendStore {
    /// A store of `capacity` pages.
    pub fn new(capacity: u32) -> SendStore {
        SendStore { ring: Ring::new(capacity), by_hash: HashMap::new(), hashes: Vec::new() }
    }

    /// Looks `page` up; new content is stored.
    pub fn offer(&mut self, page: &[u8]) -> Sent {
        let h = xxhash_rust::xxh3::xxh3_64(page);
        if let Some(&slot) = self.by_hash.get(&h) {
            // Only a byte-for-byte match is a duplicate.
            if self.ring.get(slot) == Some(page) {
                return Sent::Ref(slot);
            }
        }
        let slot = self.ring.next_slot();
        if let Some(&old) = self.hashes.get(slot as usize) {
            if self.by_hash.get(&old) == Some(&slot) {
                self.by_hash.remove(&old);
            }
            self.hashes[slot as usize] = h;
        } else {
            self.hashes.push(h);
        }
        let s = self.ring.push(page);
        debug_assert_eq!(s, slot);
        self.by_hash.insert(h, slot);
        Sent::New(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(fill: u8) -> Vec<u8> {
        vec![fill; PAGE]
    }

    #[test]
    fn same_content_is_a_reference_and_a_full_ring_forgets_the_oldest() {
        let mut s = SendStore::new(2);
        assert_eq!(s.offer(&page(1)), Sent::New(0));
        assert_eq!(s.offer(&page(1)), Sent::Ref(0));
        assert_eq!(s.offer(&page(2)), Sent::New(1));
        // Slot 0 is overwritten: page 1 is no longer there.
        assert_eq!(s.offer(&page(3)), Sent::New(0));
        assert_eq!(s.offer(&page(1)), Sent::New(1));
        assert_eq!(s.offer(&page(3)), Sent::Ref(0));
    }

    #[test]
    fn a_hash_match_with_other_bytes_is_not_a_duplicate() {
        let mut s = SendStore::new(4);
        let a = page(1);
        assert_eq!(s.offer(&a), Sent::New(0));
        // Forge a collision: the index says slot 0 for b's hash.
        let mut b = page(1);
        b[100] = 9;
        let hb = xxhash_rust::xxh3::xxh3_64(&b);
        s.by_hash.insert(hb, 0);
        assert_eq!(s.offer(&b), Sent::New(1));
    }
}
