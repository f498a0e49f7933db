//! Request and response bodies of the agent's HTTP/JSON API, shared by the agent
//! (`pacerd`), its peers and the CLI.

pub use crate::phase::JobPhase;

mod group;
mod incoming;
mod migration;
mod vm;

pub use group::*;
pub use incoming::*;
pub use migration::*;
pub use vm::*;

/// A serde default: true.
fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle() -> Workload {
        serde_json::from_str(r#"{"kind":"idle","wss_mib":4}"#).unwrap()
    }

    /// JSON written before applications existed still reads, and a workload
    /// without one is written without the field (older agents reject unknown ones).
    #[test]
    fn app_field_is_optional_both_ways() {
        let w = idle();
        assert_eq!(w.app, None);
        assert!(!serde_json::to_string(&w).unwrap().contains("app"));
        assert!(!w.kernel_args().contains("pacer.app"));
        let i: IntegrityResult = serde_json::from_str(
            r#"{"ok":true,"pages_checked":1,"bad_pages":0,"errors_total":0,"duration_ms":1}"#,
        )
        .unwrap();
        assert_eq!((i.disk_ok, i.app_ok), (true, None));
        assert!(!serde_json::to_string(&i).unwrap().contains("app"));
    }

    #[test]
    fn app_goes_to_the_kernel_command_line() {
        let w = Workload {
            app: Some(AppWorkload { kind: "redis".into(), mib: 64, rate: 12.5 }),
            ..idle()
        };
        assert!(w.kernel_args().ends_with(" pacer.app=redis pacer.app_mib=64 pacer.app_rate=12.5"));
        let back: Workload = serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
        assert_eq!(back, w);
    }

    #[test]
    fn app_checks_name_what_is_wrong() {
        let a = |kind: &str, mib, rate| AppWorkload { kind: kind.into(), mib, rate };
        for k in APP_KINDS {
            assert_eq!(a(k, 64, 10.0).check(), Ok(()));
        }
        let e = a("mysql", 64, 10.0).check().unwrap_err();
        assert_eq!(e, r#"unknown application "mysql": use redis, memcached, stress-ng, zstd"#);
        assert!(a("zstd", 0, 10.0).check().unwrap_err().contains("data set"));
        assert!(a("zstd", 64, f64::NAN).check().unwrap_err().contains("rate"));
        assert_eq!(a("zstd", 64, 1.0).memory_mib(), 176);
    }
}
