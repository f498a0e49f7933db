//! The naive estimate operators get today, kept to compare the model against.

use std::collections::VecDeque;

use super::inputs::{Sample, Status};

/// The estimate operators get today: `elapsed + remaining / current rate` (`None` at rate 0).
pub fn naive_total(sample: &Sample) -> Option<f64> {
    let rate = sample.mbps * 1e6 / 8.0;
    (rate > 0.0 && rate.is_finite() && sample.t_s.is_finite())
        .then(|| sample.t_s + sample.remaining as f64 / rate)
}

/// The naive estimate over a whole migration, disks included: while disks are copied,
/// `elapsed + (disk left + all of memory) / the copy's rate over the last second`; then
/// [`naive_total`].
#[derive(Debug, Clone, Default)]
pub struct NaiveEstimator {
    disk: VecDeque<(f64, u64)>,
}

impl NaiveEstimator {
    /// Feeds one sample (every one, for the disk rate) and returns the estimate now.
    pub fn observe(&mut self, s: &Sample) -> Option<f64> {
        if s.status != Status::None {
            return naive_total(s);
        }
        let d = s.disk?;
        self.disk.push_back((s.t_s, d.offset));
        while self.disk.len() > 2 && self.disk.front().is_some_and(|(t, _)| *t < s.t_s - 1.0) {
            self.disk.pop_front();
        }
        let (t0, o0) = *self.disk.front()?;
        let dt = s.t_s - t0;
        let rate = d.offset.saturating_sub(o0) as f64 / dt;
        (dt > 0.0 && rate > 0.0 && rate.is_finite())
            .then(|| s.t_s + (d.len.saturating_sub(d.offset) + s.ram_total) as f64 / rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predict::DiskSample;

    #[test]
    fn naive_during_disk_copy() {
        let mut n = NaiveEstimator::default();
        let s = |t: f64, offset: u64| Sample {
            t_s: t,
            ram_total: 1_000,
            disk: Some(DiskSample { len: 10_000, offset, ready: false, dirty_rate_bps: 0.0 }),
            ..Sample::default()
        };
        assert_eq!(n.observe(&s(0.0, 0)), None);
        n.observe(&s(0.5, 500));
        // 1000 B/s over the last second: 9000 of disk and 1000 of memory left.
        assert_eq!(n.observe(&s(1.0, 1000)), Some(1.0 + 10.0));
        let mem = Sample { status: Status::Active, t_s: 12.0, remaining: 500, mbps: 8e-6 * 1000.0, ..Sample::default() };
        assert_eq!(n.observe(&mem), naive_total(&mem));
    }

    #[test]
    fn naive() {
        let s = Sample {
            t_s: 10.0,
            remaining: 100_000_000,
            mbps: 800.0,
            ..Sample::default()
        };
        assert_eq!(naive_total(&s), Some(11.0));
        assert_eq!(naive_total(&Sample::default()), None);
    }
}
