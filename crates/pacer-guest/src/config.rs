//! Configuration from the kernel command line (`pacer.*` keys).

pub use crate::app::{AppConfig, AppKind, APP_CHOICES};

/// What the guest does after the initial fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Fill the working set once, then only answer commands.
    Idle,
    /// Rewrite random pages of the working set at a given rate.
    MemWrite,
}

impl Workload {
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Idle => "idle",
            Workload::MemWrite => "memwrite",
        }
    }
}

/// Which disk blocks the disk workload writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskPattern {
    /// One block after the other, wrapping around at the end of the span.
    Seq,
    /// Every block equally likely.
    Uniform,
    /// 90% of the writes land in the first `disk_hot_fraction` of the span.
    Hot,
}

impl DiskPattern {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskPattern::Seq => "seq",
            DiskPattern::Uniform => "uniform",
            DiskPattern::Hot => "hot",
        }
    }
}

/// The disk workload (`pacer.disk*` keys).
#[derive(Debug, Clone, PartialEq)]
pub struct DiskConfig {
    /// Block device (or file) to write; `None`: no disk workload.
    pub path: Option<String>,
    /// Write rate in MB/s (10^6 bytes per second); 0 = fill and verify only.
    pub rate_mbps: f64,
    /// Bytes per write, in KiB (a multiple of 4).
    pub bs_kib: u64,
    /// Which blocks are written.
    pub pattern: DiskPattern,
    /// Hot fraction of the span for [`DiskPattern::Hot`], in [0, 1].
    pub hot_fraction: f64,
    /// MiB of the device to use from its start; `None`: the whole device.
    pub span_mib: Option<u64>,
    /// Write generation 1 to the whole span at start.
    pub fill: bool,
}

/// Share of the writes that land in the hot part for [`DiskPattern::Hot`].
pub const DISK_HOT_SHARE: f64 = 0.9;

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            path: None,
            rate_mbps: 10.0,
            bs_kib: 64,
            pattern: DiskPattern::Uniform,
            hot_fraction: 0.1,
            span_mib: None,
            fill: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub workload: Workload,
    /// Working-set size in MiB.
    pub wss_mib: u64,
    /// Write rate in MB/s (10^6 bytes per second).
    pub rate_mbps: f64,
    /// Fraction of the working set that is hot, in [0, 1].
    pub hot_fraction: f64,
    /// Fraction of page writes that go to the hot set, in [0, 1].
    pub hot_share: f64,
    /// Status interval in milliseconds.
    pub status_ms: u64,
    /// Start with the memory writer paused (the `resume` command starts it).
    pub paused: bool,
    /// The disk workload.
    pub disk: DiskConfig,
    /// A real application as the workload (`pacer.app`).
    pub app: Option<AppConfig>,
    /// Fraction of the working set whose content is this guest's own; the rest
    /// is what every guest of the program holds (a gang's shared content).
    pub unique: f64,
}

/// The working set when an application runs and `pacer.wss_mib` is not
/// given: the application is the workload, this program's pages only a
/// small canary that `verify` still sweeps.
pub const APP_WSS_MIB: u64 = 4;
/// `pacer.app_mib` and `pacer.app_rate` when not given.
pub const APP_MIB: u64 = 64;
pub const APP_RATE_MBPS: f64 = 10.0;

impl Default for Config {
    fn default() -> Self {
        Config {
            workload: Workload::Idle,
            wss_mib: 256,
            rate_mbps: 60.0,
            hot_fraction: 0.1,
            hot_share: 0.9,
            status_ms: 1000,
            paused: false,
            disk: DiskConfig::default(),
            app: None,
            unique: 0.0,
        }
    }
}

fn parse_fraction(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(f) if f.is_finite() && (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("expected a number in [0, 1], got {v:?}")),
    }
}

/// Parses a kernel command line. Returns the configuration (defaults for
/// anything missing or invalid) and one message per problem found.
pub fn parse_cmdline(cmdline: &str) -> (Config, Vec<String>) {
    let mut cfg = Config::default();
    let mut errors = Vec::new();
    let mut wss_given = false;
    let (mut app, mut app_mib, mut app_rate) = (None, APP_MIB, APP_RATE_MBPS);
    for tok in cmdline.split_whitespace() {
        let Some(rest) = tok.strip_prefix("pacer.") else {
            continue;
        };
        let (key, val) = match rest.split_once('=') {
            Some((k, v)) => (k, v),
            None => {
                errors.push(format!("cmdline: {tok}: missing '=value'"));
                continue;
            }
        };
        let res: Result<(), String> = match key {
            "workload" => match val {
                "idle" => {
                    cfg.workload = Workload::Idle;
                    Ok(())
                }
                "memwrite" => {
                    cfg.workload = Workload::MemWrite;
                    Ok(())
                }
                _ => Err(format!("unknown workload {val:?} (idle|memwrite)")),
            },
            "wss_mib" => match val.parse::<u64>() {
                Ok(n) if (1..=1 << 20).contains(&n) => {
                    cfg.wss_mib = n;
                    wss_given = true;
                    Ok(())
                }
                _ => Err(format!("expected an integer >= 1, got {val:?}")),
            },
            "rate_mbps" => match val.parse::<f64>() {
                Ok(r) if r.is_finite() && r >= 0.0 => {
                    cfg.rate_mbps = r;
                    Ok(())
                }
                _ => Err(format!("expected a number >= 0, got {val:?}")),
            },
            "hot_fraction" => parse_fraction(val).map(|f| cfg.hot_fraction = f),
            "hot_share" => parse_fraction(val).map(|f| cfg.hot_share = f),
            "unique" => parse_fraction(val).map(|f| cfg.unique = f),
            "paused" => match val {
                "1" | "true" => {
                    cfg.paused = true;
                    Ok(())
                }
                "0" | "false" => {
                    cfg.paused = false;
                    Ok(())
                }
                _ => Err(format!("expected 0 or 1, got {val:?}")),
            },
            "status_ms" => match val.parse::<u64>() {
                Ok(n) if (10..=3_600_000).contains(&n) => {
                    cfg.status_ms = n;
                    Ok(())
                }
                _ => Err(format!("expected an integer in [10, 3600000], got {val:?}")),
            },
            "disk" => match val {
                "" => Err("expected a device path, e.g. /dev/vda".to_string()),
                "none" => {
                    cfg.disk.path = None;
                    Ok(())
                }
                _ => {
                    cfg.disk.path = Some(val.to_string());
                    Ok(())
                }
            },
            "disk_rate_mbps" => match val.parse::<f64>() {
                Ok(r) if r.is_finite() && r >= 0.0 => {
                    cfg.disk.rate_mbps = r;
                    Ok(())
                }
                _ => Err(format!("expected a number >= 0, got {val:?}")),
            },
            "disk_bs_kib" => match val.parse::<u64>() {
                Ok(n) if (4..=16384).contains(&n) && n % 4 == 0 => {
                    cfg.disk.bs_kib = n;
                    Ok(())
                }
                _ => Err(format!(
                    "expected a multiple of 4 in [4, 16384], got {val:?}"
                )),
            },
            "disk_pattern" => match val {
                "seq" => {
                    cfg.disk.pattern = DiskPattern::Seq;
                    Ok(())
                }
                "uniform" => {
                    cfg.disk.pattern = DiskPattern::Uniform;
                    Ok(())
                }
                "hot" => {
                    cfg.disk.pattern = DiskPattern::Hot;
                    Ok(())
                }
                _ => Err(format!("unknown pattern {val:?} (seq|uniform|hot)")),
            },
            "disk_hot_fraction" => parse_fraction(val).map(|f| cfg.disk.hot_fraction = f),
            "disk_span_mib" => match val.parse::<u64>() {
                Ok(n) if (1..=1 << 30).contains(&n) => {
                    cfg.disk.span_mib = Some(n);
                    Ok(())
                }
                _ => Err(format!("expected an integer >= 1, got {val:?}")),
            },
            "disk_fill" => match val {
                "1" | "yes" | "on" | "true" => {
                    cfg.disk.fill = true;
                    Ok(())
                }
                "0" | "no" | "off" | "false" => {
                    cfg.disk.fill = false;
                    Ok(())
                }
                _ => Err(format!("expected 0 or 1, got {val:?}")),
            },
            "app" => match AppKind::parse(val) {
                Some(k) => {
                    app = Some(k);
                    Ok(())
                }
                None if val == "none" => {
                    app = None;
                    Ok(())
                }
                None => Err(format!("unknown application {val:?} ({APP_CHOICES})")),
            },
            "app_mib" => match val.parse::<u64>() {
                Ok(n) if (1..=1 << 20).contains(&n) => {
                    app_mib = n;
                    Ok(())
                }
                _ => Err(format!("expected an integer >= 1, got {val:?}")),
            },
            "app_rate" => match val.parse::<f64>() {
                Ok(r) if r.is_finite() && r >= 0.0 => {
                    app_rate = r;
                    Ok(())
                }
                _ => Err(format!("expected a number >= 0 (MB/s), got {val:?}")),
            },
            _ => Err("unknown key".to_string()),
        };
        if let Err(e) = res {
            errors.push(format!("cmdline: pacer.{key}: {e}; using the default"));
        }
    }
    if let Some(kind) = app {
        cfg.app = Some(AppConfig {
            kind,
            mib: app_mib,
            rate_mbps: app_rate,
        });
        if !wss_given {
            cfg.wss_mib = APP_WSS_MIB;
        }
    }
    (cfg, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_absent() {
        let (c, e) = parse_cmdline("console=ttyS0 quiet root=/dev/vda\n");
        assert_eq!(c, Config::default());
        assert!(e.is_empty());
        assert_eq!(c.workload, Workload::Idle);
        assert_eq!(c.wss_mib, 256);
        assert_eq!(c.rate_mbps, 60.0);
        assert_eq!(c.hot_fraction, 0.1);
        assert_eq!(c.hot_share, 0.9);
        assert_eq!(c.status_ms, 1000);
    }

    #[test]
    fn all_keys() {
        let (c, e) = parse_cmdline(
            "console=ttyS0 pacer.workload=memwrite pacer.wss_mib=64 pacer.rate_mbps=20.5 \
             pacer.hot_fraction=0 pacer.hot_share=1 pacer.status_ms=250 quiet",
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            c,
            Config {
                workload: Workload::MemWrite,
                wss_mib: 64,
                rate_mbps: 20.5,
                hot_fraction: 0.0,
                hot_share: 1.0,
                status_ms: 250,
                paused: false,
                disk: DiskConfig::default(),
                app: None,
                unique: 0.0,
            }
        );
        let (c, e) = parse_cmdline("pacer.paused=1 pacer.unique=0.5");
        assert!((c.unique - 0.5).abs() < 1e-12);
        assert!(e.is_empty() && c.paused, "{e:?}");
        let (_, e) = parse_cmdline("pacer.paused=maybe");
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn disk_keys() {
        let (c, e) = parse_cmdline("pacer.wss_mib=32");
        assert!(e.is_empty());
        assert_eq!(c.disk, DiskConfig::default());
        assert_eq!(c.disk.path, None);
        assert_eq!(c.disk.rate_mbps, 10.0);
        assert_eq!(c.disk.bs_kib, 64);
        assert_eq!(c.disk.pattern, DiskPattern::Uniform);
        assert_eq!(c.disk.span_mib, None);
        assert!(c.disk.fill);
        let (c, e) = parse_cmdline(
            "pacer.disk=/dev/vda pacer.disk_rate_mbps=5 pacer.disk_bs_kib=16 \
             pacer.disk_pattern=hot pacer.disk_hot_fraction=0.25 pacer.disk_span_mib=32 \
             pacer.disk_fill=0",
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            c.disk,
            DiskConfig {
                path: Some("/dev/vda".into()),
                rate_mbps: 5.0,
                bs_kib: 16,
                pattern: DiskPattern::Hot,
                hot_fraction: 0.25,
                span_mib: Some(32),
                fill: false,
            }
        );
        let (c, e) = parse_cmdline(
            "pacer.disk= pacer.disk_bs_kib=6 pacer.disk_bs_kib=0 pacer.disk_pattern=zipf \
             pacer.disk_span_mib=0 pacer.disk_fill=maybe pacer.disk_rate_mbps=-1",
        );
        assert_eq!(c.disk, DiskConfig::default());
        assert_eq!(e.len(), 7, "{e:?}");
        let (c, _) = parse_cmdline("pacer.disk=/dev/vda pacer.disk_pattern=seq pacer.disk=none");
        assert_eq!(c.disk.path, None);
        assert_eq!(c.disk.pattern, DiskPattern::Seq);
    }

    #[test]
    fn bad_values_fall_back_to_defaults() {
        let (c, e) = parse_cmdline(
            "pacer.workload=spin pacer.wss_mib=0 pacer.rate_mbps=-3 pacer.hot_fraction=1.5 \
             pacer.hot_share=abc pacer.status_ms=1 pacer.bogus=1 pacer.noequals pacer.wss_mib=x",
        );
        assert_eq!(c, Config::default());
        assert_eq!(e.len(), 9, "{e:?}");
        assert!(e.iter().any(|m| m.contains("pacer.bogus")));
        assert!(e.iter().any(|m| m.contains("pacer.workload")));
        assert!(e.iter().any(|m| m.contains("noequals")));
    }

    #[test]
    fn good_values_survive_bad_neighbours() {
        let (c, e) = parse_cmdline("pacer.wss_mib=32 pacer.rate_mbps=nan pacer.workload=memwrite");
        assert_eq!(c.wss_mib, 32);
        assert_eq!(c.rate_mbps, 60.0);
        assert_eq!(c.workload, Workload::MemWrite);
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn app_keys() {
        let (c, e) = parse_cmdline("pacer.app=redis pacer.app_mib=96 pacer.app_rate=12.5");
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            c.app,
            Some(AppConfig { kind: AppKind::Redis, mib: 96, rate_mbps: 12.5 })
        );
        // The program's own pages shrink to a canary unless asked for.
        assert_eq!((c.wss_mib, c.workload), (APP_WSS_MIB, Workload::Idle));
        let (c, _) = parse_cmdline("pacer.wss_mib=32 pacer.app=stress-ng");
        assert_eq!(c.wss_mib, 32);
        assert_eq!(c.app.unwrap(), AppConfig { kind: AppKind::StressNg, mib: APP_MIB, rate_mbps: APP_RATE_MBPS });
        let (c, e) = parse_cmdline("pacer.app=mysql pacer.app_mib=0 pacer.app_rate=-1");
        assert_eq!((c.app, c.wss_mib), (None, 256));
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains("redis|memcached|stress-ng|zstd"), "{e:?}");
    }

    #[test]
    fn later_key_wins() {
        let (c, e) = parse_cmdline("pacer.wss_mib=32 pacer.wss_mib=48");
        assert_eq!(c.wss_mib, 48);
        assert!(e.is_empty());
    }
}
