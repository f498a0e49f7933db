//! A pure, page-level simulator of QEMU pre-copy that emits what `query-migrate` would report.
//!
//! The guest has `ram_bytes` of pages; a `zero_fraction` of them are zero and stay zero. It
//! writes `write_rate_bps` worth of pages per second, each to a page drawn uniformly from a
//! working set of `wss_bytes` among the non-zero pages. The migration follows QEMU's rules
//! (7.2 to 10.0, without the KVM dirty-log lazy clear, as under TCG):
//!
//! - setup syncs the dirty log once and marks every page dirty (`dirty-sync-count` 1);
//! - the sender walks the dirty bitmap in page order, wrapping around, and pays `page + 8`
//!   wire bytes per normal page and 9 per zero page, at the link rate (times a log-normal
//!   jitter that changes every 200 ms, optionally capped like QEMU's max-bandwidth);
//! - every 100 ms the bandwidth of the last 100 ms sets `threshold = bandwidth x downtime-limit`;
//! - every 50 ms, or when nothing is dirty, if the dirty bytes are below the threshold the dirty
//!   log is synced into the bitmap; if the dirty bytes are then at most the threshold, the guest
//!   stops and the rest is sent: that time plus the switch-over is the downtime.
//!
//! `dirty-pages-rate` is computed like QEMU's: new dirty pages found at syncs over periods of at
//! least 1 s. Everything is deterministic for a given `seed`. [`simulate_precopy`] runs a whole
//! migration at a fixed rate; [`PrecopySim`] can be driven step by step with changing caps
//! (pacing, links shared by several migrations).
//!
//! (About 620 lines outside tests: one simulator, whose rounds, caps and switch-over
//! rule are read together; the predictor's tests check it line by line.)

use thiserror::Error;

use crate::predict::{
    Sample, Status, CHECK_INTERVAL_S, PAGE_HEADER_BYTES, SWITCHOVER_S, ZERO_PAGE_WIRE_BYTES,
};

/// Simulation time step, seconds.
const STEP_S: f64 = 0.01;
/// Interval between samples, as a poller of `query-migrate` would take them, seconds.
pub const SAMPLE_INTERVAL_S: f64 = 0.2;
/// QEMU's bandwidth measurement period, seconds.
const BANDWIDTH_PERIOD_S: f64 = 0.1;
/// How long a jitter factor of the link lasts, seconds.
const JITTER_PERIOD_S: f64 = 0.2;
/// Correlation of consecutive jitter factors.
const JITTER_CORRELATION: f64 = 0.5;

/// Why a simulation cannot run.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SimError {
    /// The page size is zero or RAM holds less than one page.
    #[error("invalid memory: {ram} bytes of RAM in pages of {page} bytes: need at least one page")]
    InvalidMemory {
        /// RAM in bytes.
        ram: u64,
        /// Page size in bytes.
        page: u64,
    },
    /// The zero-page fraction is outside [0, 1).
    #[error("invalid zero-page fraction {0}: must be in [0, 1), e.g. 0.5")]
    InvalidZeroFraction(f64),
    /// The working set does not fit in the non-zero part of RAM.
    #[error("working set of {wss} bytes does not fit in the {data} non-zero bytes of RAM")]
    WssTooLarge {
        /// Working set in bytes.
        wss: u64,
        /// Non-zero RAM in bytes.
        data: u64,
    },
    /// A rate is negative (write rate) or not positive (link), or not finite.
    #[error("invalid {what} {value} B/s: must be a finite rate{}", if *.what == "link rate" { " > 0" } else { " >= 0" })]
    InvalidRate {
        /// Which rate.
        what: &'static str,
        /// The offending value.
        value: f64,
    },
    /// The downtime limit is zero.
    #[error("invalid downtime limit 0 ms: must be at least 1 ms, e.g. 300")]
    InvalidDowntimeLimit,
    /// A time or the jitter is negative or not finite (or the duration not positive).
    #[error("invalid {what} {value}: must be a finite number >= 0 (duration > 0, jitter <= 1)")]
    InvalidParameter {
        /// Which parameter.
        what: &'static str,
        /// The offending value.
        value: f64,
    },
}

/// The guest, the link and QEMU's settings for one simulated migration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimParams {
    /// Guest RAM in bytes.
    pub ram_bytes: u64,
    /// Page size in bytes.
    pub page_size: u64,
    /// Fraction of pages that are zero.
    pub zero_fraction: f64,
    /// Writable working set in bytes (within the non-zero pages).
    pub wss_bytes: u64,
    /// Page writes per second times the page size, bytes/s.
    pub write_rate_bps: f64,
    /// Link rate in bytes/s.
    pub link_bps: f64,
    /// QEMU's downtime-limit in ms.
    pub downtime_limit_ms: u64,
    /// Relative standard deviation of the link rate over 200 ms periods (0 for a steady link).
    pub jitter: f64,
    /// Seconds spent in QEMU's setup before sending.
    pub setup_s: f64,
    /// Seconds to stop the guest and move device state at switch-over.
    pub switchover_s: f64,
    /// Give up (not converged) after this many seconds.
    pub max_duration_s: f64,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for SimParams {
    /// The test bed's "naive estimate" case: 1 GiB, 70% zero, 200 MB written at 10 MB/s, 200 Mbit/s.
    fn default() -> Self {
        SimParams {
            ram_bytes: 1 << 30,
            page_size: 4096,
            zero_fraction: 0.7,
            wss_bytes: 200_000_000,
            write_rate_bps: 10e6,
            link_bps: 25e6,
            downtime_limit_ms: 300,
            jitter: 0.0,
            setup_s: 0.05,
            switchover_s: SWITCHOVER_S,
            max_duration_s: 600.0,
            seed: 1,
        }
    }
}

impl SimParams {
    /// Checks that every field holds a usable value.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.page_size == 0 || self.ram_bytes < self.page_size {
            return Err(SimError::InvalidMemory {
                ram: self.ram_bytes,
                page: self.page_size,
            });
        }
        if !(0.0..1.0).contains(&self.zero_fraction) {
            return Err(SimError::InvalidZeroFraction(self.zero_fraction));
        }
        let data = (self.ram_bytes as f64 * (1.0 - self.zero_fraction)) as u64;
        if self.wss_bytes > data {
            return Err(SimError::WssTooLarge {
                wss: self.wss_bytes,
                data,
            });
        }
        if !(self.write_rate_bps.is_finite() && self.write_rate_bps >= 0.0) {
            return Err(SimError::InvalidRate {
                what: "write rate",
                value: self.write_rate_bps,
            });
        }
        if !(self.link_bps.is_finite() && self.link_bps > 0.0) {
            return Err(SimError::InvalidRate {
                what: "link rate",
                value: self.link_bps,
            });
        }
        if self.downtime_limit_ms == 0 {
            return Err(SimError::InvalidDowntimeLimit);
        }
        for (what, value, ok) in [
            ("jitter", self.jitter, self.jitter <= 1.0),
            ("setup time", self.setup_s, true),
            ("switch-over time", self.switchover_s, true),
            (
                "maximum duration",
                self.max_duration_s,
                self.max_duration_s > 0.0,
            ),
        ] {
            if !(value.is_finite() && value >= 0.0 && ok) {
                return Err(SimError::InvalidParameter { what, value });
            }
        }
        Ok(())
    }
}

/// A whole simulated migration and what really happened.
#[derive(Debug, Clone, PartialEq)]
pub struct SimRun {
    /// Samples every 200 ms from t = 0, the last one `completed` if it converged.
    pub samples: Vec<Sample>,
    /// True total migration time in seconds (the time limit if it did not converge).
    pub total_s: f64,
    /// True downtime in ms (0 if it did not converge).
    pub downtime_ms: f64,
    /// Whether the migration completed within the time limit.
    pub converged: bool,
    /// Wire bytes sent.
    pub transferred: u64,
}

/// Runs a pre-copy migration at the link rate and samples it every 200 ms.
pub fn simulate_precopy(params: &SimParams) -> Result<SimRun, SimError> {
    let mut sim = PrecopySim::new(params)?;
    let mut samples = vec![sim.sample()];
    let mut tick = 0u64;
    while sim.sample().status != Status::Completed {
        tick += 1;
        let t = tick as f64 * SAMPLE_INTERVAL_S;
        if t > params.max_duration_s {
            return Ok(SimRun {
                samples,
                total_s: params.max_duration_s,
                downtime_ms: 0.0,
                converged: false,
                transferred: sim.transferred,
            });
        }
        sim.run_until(t, f64::INFINITY);
        samples.push(sim.sample());
    }
    let (end, downtime) = sim.finished().expect("completed");
    Ok(SimRun {
        samples,
        total_s: end,
        downtime_ms: downtime * 1000.0,
        converged: true,
        transferred: sim.transferred,
    })
}

/// Distinct bytes the guest dirties in `window_s` seconds (what `calc-dirty-rate` measures x window).
pub fn probe_dirty_bytes(params: &SimParams, window_s: f64) -> Result<f64, SimError> {
    params.validate()?;
    if !(window_s.is_finite() && window_s > 0.0) {
        return Err(SimError::InvalidParameter {
            what: "probe window",
            value: window_s,
        });
    }
    let ps = params.page_size as f64;
    let m = (params.wss_bytes as f64 / ps).round() as usize;
    if m == 0 {
        return Ok(0.0);
    }
    let writes = (params.write_rate_bps / ps * window_s).round() as u64;
    let mut rng = Rng(params.seed ^ 0x7072_6f62_6520_6469);
    let mut seen = Bits::new(m);
    let mut distinct = 0u64;
    for _ in 0..writes {
        let i = rng.below(m);
        if !seen.get(i) {
            seen.set(i);
            distinct += 1;
        }
    }
    Ok(distinct as f64 * ps)
}

/// Where the simulated migration is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Setup,
    Running,
    Stopped { at: f64 },
    Done { end: f64, downtime: f64 },
}

/// A pre-copy migration that can be advanced step by step.
#[derive(Debug, Clone)]
pub struct PrecopySim {
    p: SimParams,
    n: usize,
    ps: f64,
    zero: Bits,
    wss: Vec<u32>,
    bitmap: Bits,
    log: Bits,
    pending: u64,
    cursor: usize,
    writes: Rng,
    link: Rng,
    t: f64,
    stage: Stage,
    transferred: u64,
    duplicate: u64,
    normal: u64,
    precopy_bytes: u64,
    syncs: u64,
    dirty_pages_rate: u64,
    period_start: f64,
    period_pages: u64,
    write_acc: f64,
    credit: f64,
    bw_mark: f64,
    bw_bytes: u64,
    bw_rate: f64,
    next_check: f64,
    jitter_period: i64,
    jitter_x: f64,
    jitter_factor: f64,
}

impl PrecopySim {
    /// Lays out guest memory and starts the migration at t = 0.
    pub fn new(params: &SimParams) -> Result<Self, SimError> {
        params.validate()?;
        let ps = params.page_size as f64;
        let n = (params.ram_bytes / params.page_size) as usize;
        let mut layout = Rng(params.seed);
        let mut zero = Bits::new(n);
        let mut data: Vec<u32> = Vec::with_capacity(n);
        for i in 0..n {
            if layout.f64() < params.zero_fraction {
                zero.set(i);
            } else {
                data.push(i as u32);
            }
        }
        let k = ((params.wss_bytes as f64 / ps).round() as usize).min(data.len());
        for i in 0..k {
            let j = i + layout.below(data.len() - i);
            data.swap(i, j);
        }
        data.truncate(k);
        Ok(PrecopySim {
            p: *params,
            n,
            ps,
            zero,
            wss: data,
            bitmap: Bits::new(n),
            log: Bits::new(n),
            pending: 0,
            cursor: 0,
            writes: Rng(params.seed.wrapping_add(0x9e37_79b9)),
            link: Rng(params.seed.wrapping_add(0x7f4a_7c15)),
            t: 0.0,
            stage: Stage::Setup,
            transferred: 0,
            duplicate: 0,
            normal: 0,
            precopy_bytes: 0,
            syncs: 0,
            dirty_pages_rate: 0,
            period_start: 0.0,
            period_pages: 0,
            write_acc: 0.0,
            credit: 0.0,
            bw_mark: 0.0,
            bw_bytes: 0,
            bw_rate: 0.0,
            next_check: 0.0,
            jitter_period: -1,
            jitter_x: 0.0,
            jitter_factor: 1.0,
        })
    }

    /// Current simulated time, seconds.
    pub fn now_s(&self) -> f64 {
        self.t
    }

    /// `(end time, downtime)` in seconds once the migration has completed.
    pub fn finished(&self) -> Option<(f64, f64)> {
        match self.stage {
            Stage::Done { end, downtime } => Some((end, downtime)),
            _ => None,
        }
    }

    /// Advances to `t_s` with the sending rate capped at `cap_bps` (QEMU's max-bandwidth).
    pub fn run_until(&mut self, t_s: f64, cap_bps: f64) {
        while self.t < t_s - 1e-9 {
            if matches!(self.stage, Stage::Done { .. }) {
                self.t = t_s;
                return;
            }
            let dt = STEP_S.min(t_s - self.t);
            self.step(dt, cap_bps);
        }
    }

    /// What `query-migrate` would report now.
    pub fn sample(&self) -> Sample {
        let status = match self.stage {
            Stage::Setup => Status::Setup,
            Stage::Done { end, .. } if self.t >= end - 1e-9 => Status::Completed,
            _ => Status::Active,
        };
        let remaining = match self.stage {
            Stage::Setup => self.n as u64,
            _ => self.pending,
        };
        Sample {
            t_s: self.t,
            status,
            ram_total: self.n as u64 * self.p.page_size,
            transferred: self.transferred,
            remaining: remaining * self.p.page_size,
            duplicate_pages: self.duplicate,
            normal_pages: self.normal,
            normal_bytes: self.normal * self.p.page_size,
            dirty_pages_rate: self.dirty_pages_rate,
            page_size: self.p.page_size,
            dirty_sync_count: self.syncs,
            mbps: self.bw_rate * 8.0 / 1e6,
            precopy_bytes: match self.stage {
                Stage::Setup | Stage::Running => self.transferred,
                _ => self.precopy_bytes,
            },
            disk: None,
            throttle: 0.0,
        }
    }

    fn step(&mut self, dt: f64, cap_bps: f64) {
        if self.stage == Stage::Setup && self.t >= self.p.setup_s - 1e-9 {
            self.bitmap.fill(self.n);
            self.pending = self.n as u64;
            self.syncs = 1;
            self.period_start = self.t;
            self.bw_mark = self.t;
            self.next_check = self.t + CHECK_INTERVAL_S;
            self.stage = Stage::Running;
        }
        if matches!(self.stage, Stage::Setup | Stage::Running) {
            self.guest_writes(dt);
        }
        let start = self.t;
        self.t += dt;
        if matches!(self.stage, Stage::Running | Stage::Stopped { .. }) {
            let rate = (self.p.link_bps * self.jitter(start)).min(cap_bps.max(0.0));
            self.send(start, dt, rate);
        }
        if self.t >= self.bw_mark + BANDWIDTH_PERIOD_S - 1e-9 {
            self.bw_rate = self.bw_bytes as f64 / (self.t - self.bw_mark);
            self.bw_bytes = 0;
            self.bw_mark = self.t;
        }
        if self.stage == Stage::Running && (self.pending == 0 || self.t >= self.next_check - 1e-9) {
            self.next_check = self.t + CHECK_INTERVAL_S;
            let threshold = self.bw_rate * self.p.downtime_limit_ms as f64 / 1000.0;
            if self.pending == 0 || (self.pending as f64 * self.ps) < threshold {
                self.sync();
                if self.pending == 0 || (self.pending as f64 * self.ps) <= threshold {
                    self.precopy_bytes = self.transferred;
                    self.stage = Stage::Stopped { at: self.t };
                }
            }
        }
    }

    fn jitter(&mut self, t: f64) -> f64 {
        if self.p.jitter == 0.0 {
            return 1.0;
        }
        let period = (t / JITTER_PERIOD_S).floor() as i64;
        while self.jitter_period < period {
            let rho = JITTER_CORRELATION;
            self.jitter_x = rho * self.jitter_x + (1.0 - rho * rho).sqrt() * self.link.normal();
            self.jitter_period += 1;
        }
        let s = self.p.jitter;
        self.jitter_factor = (s * self.jitter_x - s * s / 2.0).exp();
        self.jitter_factor
    }

    fn guest_writes(&mut self, dt: f64) {
        if self.wss.is_empty() {
            return;
        }
        self.write_acc += self.p.write_rate_bps / self.ps * dt;
        let k = self.write_acc.floor();
        self.write_acc -= k;
        for _ in 0..k as u64 {
            let page = self.wss[self.writes.below(self.wss.len())] as usize;
            self.log.set(page);
        }
    }

    fn send(&mut self, start: f64, dt: f64, rate: f64) {
        self.credit += rate * dt;
        let normal_cost = self.ps + PAGE_HEADER_BYTES;
        while self.pending > 0 {
            let i = match self.bitmap.next_set(self.cursor) {
                Some(i) => i,
                None => self
                    .bitmap
                    .next_set(0)
                    .expect("pending pages are in the bitmap"),
            };
            let is_zero = self.zero.get(i);
            let cost = if is_zero {
                ZERO_PAGE_WIRE_BYTES
            } else {
                normal_cost
            };
            if self.credit < cost {
                break;
            }
            self.credit -= cost;
            self.bitmap.clear(i);
            self.pending -= 1;
            self.cursor = if i + 1 >= self.n { 0 } else { i + 1 };
            if is_zero {
                self.duplicate += 1;
            } else {
                self.normal += 1;
            }
            self.transferred += cost as u64;
            self.bw_bytes += cost as u64;
        }
        if self.pending == 0 {
            if let Stage::Stopped { at } = self.stage {
                let last_byte = if rate > 0.0 {
                    (start + dt - self.credit / rate).max(start)
                } else {
                    start + dt
                };
                self.syncs += 1;
                let end = last_byte + self.p.switchover_s;
                self.stage = Stage::Done {
                    end,
                    downtime: end - at,
                };
            }
            self.credit = 0.0;
        }
    }

    fn sync(&mut self) {
        let new = self.bitmap.merge(&mut self.log);
        self.pending += new;
        self.syncs += 1;
        self.period_pages += new;
        let elapsed = self.t - self.period_start;
        if elapsed >= 1.0 {
            self.dirty_pages_rate = (self.period_pages as f64 / elapsed) as u64;
            self.period_pages = 0;
            self.period_start = self.t;
        }
    }
}

/// A fixed-size bit set.
#[derive(Debug, Clone)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 == 1
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
    /// Sets bits 0..n.
    fn fill(&mut self, n: usize) {
        for (w, word) in self.0.iter_mut().enumerate() {
            let bits = n.saturating_sub(w * 64).min(64);
            *word = if bits == 64 { !0 } else { (1u64 << bits) - 1 };
        }
    }
    /// The first set bit at or after `from`.
    fn next_set(&self, from: usize) -> Option<usize> {
        let mut w = from / 64;
        if w >= self.0.len() {
            return None;
        }
        let mut word = self.0[w] & (!0u64 << (from % 64));
        loop {
            if word != 0 {
                return Some(w * 64 + word.trailing_zeros() as usize);
            }
            w += 1;
            if w >= self.0.len() {
                return None;
            }
            word = self.0[w];
        }
    }
    /// ORs `other` into `self`, clears `other`, and returns how many bits were newly set.
    fn merge(&mut self, other: &mut Bits) -> u64 {
        let mut new = 0;
        for (a, b) in self.0.iter_mut().zip(other.0.iter_mut()) {
            new += (*b & !*a).count_ones() as u64;
            *a |= *b;
            *b = 0;
        }
        new
    }
}

/// SplitMix64: small, fast and deterministic.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u = 1.0 - self.f64();
        let v = self.f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let ok = SimParams::default();
        assert!(ok.validate().is_ok());
        for bad in [
            SimParams { page_size: 0, ..ok },
            SimParams {
                ram_bytes: 100,
                ..ok
            },
            SimParams {
                zero_fraction: 1.0,
                ..ok
            },
            SimParams {
                wss_bytes: 1 << 30,
                ..ok
            },
            SimParams {
                write_rate_bps: -1.0,
                ..ok
            },
            SimParams {
                link_bps: 0.0,
                ..ok
            },
            SimParams {
                downtime_limit_ms: 0,
                ..ok
            },
            SimParams { jitter: 2.0, ..ok },
            SimParams {
                max_duration_s: 0.0,
                ..ok
            },
            SimParams {
                setup_s: f64::NAN,
                ..ok
            },
        ] {
            assert!(simulate_precopy(&bad).is_err(), "{bad:?}");
        }
        let e = SimParams {
            link_bps: 0.0,
            ..ok
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("link rate"), "{e}");
    }

    #[test]
    fn bits() {
        let mut b = Bits::new(130);
        b.fill(130);
        assert_eq!(b.next_set(129), Some(129));
        assert_eq!(b.next_set(130), None);
        b.clear(5);
        assert_eq!(b.next_set(5), Some(6));
        let mut o = Bits::new(130);
        o.set(5);
        o.set(6);
        assert_eq!(b.merge(&mut o), 1);
        assert_eq!(o.next_set(0), None);
    }

    #[test]
    fn idle_guest_sends_each_page_once() {
        let p = SimParams {
            ram_bytes: 64 << 20,
            zero_fraction: 0.5,
            write_rate_bps: 0.0,
            wss_bytes: 0,
            link_bps: 50e6,
            ..SimParams::default()
        };
        let run = simulate_precopy(&p).unwrap();
        assert!(run.converged);
        let pages = (64u64 << 20) / 4096;
        let last = run.samples.last().unwrap();
        assert_eq!(last.status, Status::Completed);
        assert_eq!(last.duplicate_pages + last.normal_pages, pages);
        assert_eq!(last.remaining, 0);
        let expect = p.setup_s + run.transferred as f64 / 50e6 + p.switchover_s;
        assert!(
            (run.total_s - expect).abs() < 0.02,
            "{} vs {expect}",
            run.total_s
        );
        // Zero pages ~ half of the pages but a tiny share of the bytes.
        assert!((last.duplicate_pages as f64 / pages as f64 - 0.5).abs() < 0.02);
        assert!(run.downtime_ms <= 300.0 + 10.0 + 1.0, "{}", run.downtime_ms);
    }

    #[test]
    fn busy_guest_matches_test_bed_shape() {
        // 1 GiB, 200 MB written at 10 MB/s, 200 Mbit/s: about 20 s, ~270-300 ms downtime.
        let run = simulate_precopy(&SimParams::default()).unwrap();
        assert!(run.converged);
        assert!(run.total_s > 15.0 && run.total_s < 35.0, "{}", run.total_s);
        assert!(
            run.downtime_ms > 150.0 && run.downtime_ms < 320.0,
            "{}",
            run.downtime_ms
        );
        let syncs: Vec<u64> = run.samples.iter().map(|s| s.dirty_sync_count).collect();
        assert!(syncs.windows(2).all(|w| w[0] <= w[1]));
        assert!(*syncs.last().unwrap() >= 3);
        assert!(run.samples.iter().any(|s| s.dirty_pages_rate > 0));
        // Deterministic.
        assert_eq!(simulate_precopy(&SimParams::default()).unwrap(), run);
    }

    #[test]
    fn writer_faster_than_link_never_converges() {
        let p = SimParams {
            ram_bytes: 128 << 20,
            zero_fraction: 0.3,
            wss_bytes: 60 << 20,
            write_rate_bps: 60e6,
            link_bps: 25e6,
            max_duration_s: 30.0,
            ..SimParams::default()
        };
        let run = simulate_precopy(&p).unwrap();
        assert!(!run.converged);
        assert_eq!(run.total_s, 30.0);
    }

    #[test]
    fn probe_saturates() {
        let p = SimParams::default();
        let one = probe_dirty_bytes(&p, 1.0).unwrap();
        let hundred = probe_dirty_bytes(&p, 100.0).unwrap();
        assert!((one / 10e6 - 0.975).abs() < 0.02, "{one}");
        assert!(hundred < 200e6 && hundred > 190e6, "{hundred}");
        assert!(probe_dirty_bytes(&p, 0.0).is_err());
    }
}
