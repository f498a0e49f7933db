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
}

impl SyncPoints {
    /// Windows shorter than `min_window_s` are too blurred by the sample interval
    /// (a sync is placed half-way between the samples around it) and are not given.
    pub fn new(min_window_s: f64) -> Self {
        SyncPoints { min_window_s, last: None, last_sync_count: 0, last_sync_s: None }
    }

    /// When the dirty log was last synced (s, on the samples' clock), once seen.
    pub fn last_sync_s(&self) -> Option<f64> {
        self.last_sync_s
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
                if self.last_sync_count >= 1 && single && s.status == Status::Active {
                    let ps = s.page_size.max(1) as f64;
                    let window = est - t0;
                    let pages = s.duplicate_pages + s.normal_pages;
                    let sent = pages.saturating_sub(l.duplicate_pages + l.normal_pages) as f64;
                    let mut new = s.remaining as f64 - l.remaining as f64 + sent * ps;
                    if new < 0.0 {
                        new = s.dirty_pages_rate as f64 * ps * window;
                    }
                    if window >= self.min_window_s {
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
}
