//! Points on a guest's dirtying curve from QEMU's dirty-log syncs.
//!
//! After each sync of the dirty log QEMU's `remaining` jumps by the pages dirtied
//! since the previous sync: `(window between the two syncs, bytes dirtied)` is a point
//! of the curve [`crate::DirtyModel`] describes, counted by QEMU itself (every write,
//! including a page rewritten with the bytes it held, which content hashing cannot
//! see). Used by the live predictor and by the dirty-log probe before a migration.

use super::inputs::{Sample, Status};

/// Follows `query-migrate` samples and yields a point at each sync it can place.
#[derive(Debug, Clone)]
pub struct SyncPoints {
    min_window_s: f64,
    last: Option<Sample>,
    last_sync_count: u64,
    last_sync_s: Option<f64>,
    /// Every sync after the first, short windows too: `(seconds, bytes found)`.
    span: (f64, f64),
}

impl SyncPoints {
    /// Windows shorter than `min_window_s` are too blurred by the sample interval
    /// (a sync is placed half-way between the samples around it) and are not given.
    pub fn new(min_window_s: f64) -> Self {
        SyncPoints { min_window_s, last: None, last_sync_count: 0, last_sync_s: None, span: (0.0, 0.0) }
    }

    /// When the dirty log was last synced (s, on the samples' clock), once seen.
    pub fn last_sync_s(&self) -> Option<f64> {
        self.last_sync_s
    }

    /// The time from the first placed sync to the last and the bytes the syncs in it
    /// found dirty, short windows and several syncs between two samples included (`None`
    /// before the second sync, the end of round one). Its ratio is the rate QEMU resends at over
    /// that time: for a guest that writes in bursts (a whole buffer now and then, quiet
    /// between) most windows see nothing and one sees everything, which no point alone says.
    pub fn span(&self) -> Option<(f64, f64)> {
        (self.span.0 > 0.0).then_some(self.span)
    }

    /// Takes the next sample; returns `(window s, bytes dirtied)` when a single sync
    /// happened since the previous sample with the guest running (not the final one),
    /// after a window of at least the minimum.
    pub fn observe(&mut self, s: &Sample) -> Option<(f64, f64)> {
        let mut point = None;
        if s.dirty_sync_count > self.last_sync_count {
            let est = self.last.as_ref().map_or(s.t_s, |l| 0.5 * (l.t_s + s.t_s));
            if let (Some(l), Some(t0)) = (&self.last, self.last_sync_s) {
                let single = s.dirty_sync_count == self.last_sync_count + 1;
                if self.last_sync_count >= 1 && s.status == Status::Active {
                    let ps = s.page_size.max(1) as f64;
                    let window = est - t0;
                    let pages = s.duplicate_pages + s.normal_pages;
                    let sent = pages.saturating_sub(l.duplicate_pages + l.normal_pages) as f64;
                    let mut new = s.remaining as f64 - l.remaining as f64 + sent * ps;
                    if new < 0.0 {
                        new = s.dirty_pages_rate as f64 * ps * window;
                    }
                    if window > 0.0 {
                        self.span = (self.span.0 + window, self.span.1 + new);
                    }
                    if single && window >= self.min_window_s {
                        point = Some((window, new));
                    }
                }
            }
            self.last_sync_s = Some(est);
            self.last_sync_count = s.dirty_sync_count;
        }
        self.last = Some(s.clone());
        point
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_s: f64, sync: u64, remaining: u64, pages: u64) -> Sample {
        Sample {
            t_s,
            status: Status::Active,
            ram_total: 1 << 30,
            remaining,
            normal_pages: pages,
            page_size: 4096,
            dirty_sync_count: sync,
            ..Default::default()
        }
    }

    #[test]
    fn a_sync_gives_the_pages_dirtied_since_the_previous_one() {
        let mut p = SyncPoints::new(0.2);
        assert_eq!(p.observe(&sample(0.0, 1, 1 << 30, 0)), None);
        assert_eq!(p.observe(&sample(1.0, 1, 1000 * 4096, 1000)), None);
        // 1000 pages left at 1.0 s; by 2.0 s 1000 more sent and a sync found 500 dirty.
        let (w, b) = p.observe(&sample(2.0, 2, 500 * 4096, 2000)).unwrap();
        assert!((w - 1.5).abs() < 1e-9, "half-way between the samples around the sync: {w}");
        assert_eq!(b, 500.0 * 4096.0);
    }

    #[test]
    fn two_syncs_between_samples_or_a_short_window_give_nothing() {
        let mut p = SyncPoints::new(1.0);
        p.observe(&sample(0.0, 1, 1 << 20, 0));
        assert_eq!(p.observe(&sample(1.0, 3, 4096, 10)), None, "two syncs: the window is unknown");
        // Syncs placed at 0.5 and 1.1 s: 0.6 s is shorter than the minimum.
        assert_eq!(p.observe(&sample(1.2, 4, 4096, 11)), None);
        let (w, _) = p.observe(&sample(3.0, 5, 4096, 12)).unwrap();
        assert!((w - 1.0).abs() < 1e-9, "{w}");
    }

    #[test]
    fn the_span_counts_every_sync_short_or_not() {
        // A burst writer: quiet windows find 10 pages, one finds 5000.
        let mut p = SyncPoints::new(1.0);
        p.observe(&sample(0.0, 1, 1 << 20, 0));
        assert_eq!(p.span(), None);
        let mut sent = 0;
        for (i, found) in [10u64, 10, 5000, 10].iter().enumerate() {
            // Each sample: everything left was sent, then a sync found `found` pages.
            p.observe(&sample(0.5 * (i + 1) as f64, 2 + i as u64, found * 4096, sent));
            sent += found;
        }
        let (t, b) = p.span().unwrap();
        assert!((t - 1.75).abs() < 1e-9, "from the first sync placed to the last: {t}");
        assert!(b > 5000.0 * 4096.0, "the burst is counted though its window was short: {b}");
    }
}
