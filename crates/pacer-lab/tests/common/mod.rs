//! Shared set-up for the integration tests: a real test bed (namespaced hosts,
//! shaped links, real agents), real QEMU, the real Pacer guest.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use pacer_api::{
    AccelChoice, AgentClient, JobInfo, MigrateRequest, MigrationResult, PeerRef, Strategy,
    VmInfo, VmSpec, VmState, Workload,
};
use pacer_guest_proto::{scan, status_count, DiskPhase, GuestLine};
use pacer_lab::bed::{self, Bed, BedOptions};
use pacer_lab::guest_image::{ensure_guest_image, GuestImage, ImageOptions};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The directory holding the workspace's binaries (pacer, pacerd): the test
/// executable is `target/<profile>/deps/<test>-<hash>`, they are in
/// `target/<profile>/` (`CARGO_BIN_EXE_*` names only this package's own binaries).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe.parent().expect("the test executable's directory");
    let dir = if dir.ends_with("deps") { dir.parent().expect("target/<profile>") } else { dir };
    dir.to_path_buf()
}

/// A workspace binary beside the tests, or a panic saying how to build it.
pub fn workspace_bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: these tests run the workspace's binaries; build them first with \
         `cargo build --workspace` (same profile as the tests)",
        p.display()
    );
    p
}

/// A test bed removed on drop.
pub struct TestBed {
    pub bed: Bed,
    pub root: tempfile::TempDir,
}

/// Options for a test bed.
pub struct BedSpec {
    pub hosts: usize,
    pub rate: &'static str,
    pub memory_capacity: Option<&'static str>,
    pub lease_s: Option<u64>,
}

impl Default for BedSpec {
    fn default() -> Self {
        BedSpec { hosts: 2, rate: "1gbit", memory_capacity: None, lease_s: Some(6) }
    }
}

impl TestBed {
    pub fn new(spec: BedSpec) -> TestBed {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        // Unique across concurrently running test processes: pid and counter.
        let name = format!("t{}", radix36((std::process::id() as u64) * 16 + n as u64));
        let name: String = name.chars().take(6).collect();
        let root = tempfile::Builder::new().prefix("pbed").tempdir_in("/tmp").unwrap();
        let bed = bed::up(&BedOptions {
            name: name.clone(),
            hosts: spec.hosts,
            rate_bps: pacer_lab::net::parse_rate(spec.rate).unwrap(),
            pacerd: workspace_bin("pacerd"),
            root: root.path().to_path_buf(),
            memory_capacity: spec.memory_capacity.map(String::from),
            incoming_lease_s: spec.lease_s,
        })
        .unwrap_or_else(|e| panic!("test bed {name}: {e}"));
        TestBed { bed, root }
    }

    pub fn hosts_file(&self) -> PathBuf {
        self.bed.hosts_file()
    }

    fn entry(&self, host: &str) -> pacer_api::HostEntry {
        let f: pacer_api::HostsFile =
            serde_json::from_slice(&std::fs::read(self.hosts_file()).unwrap()).unwrap();
        f.hosts.into_iter().find(|h| h.name == host).unwrap()
    }

    /// API client of a host's agent.
    pub fn client(&self, host: &str) -> AgentClient {
        let e = self.entry(host);
        AgentClient::new(e.url, e.token)
    }

    /// How the source agent reaches `host`.
    pub fn peer(&self, host: &str) -> PeerRef {
        let e = self.entry(host);
        PeerRef { name: e.name.clone(), url: e.peer_url().to_string(), token: e.token }
    }

    /// What to ask for to predict a plain pre-copy to `to`.
    pub fn precopy_prediction(&self, to: &str) -> pacer_api::PredictRequest {
        pacer_api::PredictRequest {
            destination: self.peer(to),
            strategy: pacer_api::Strategy::PreCopy,
            bandwidth: None,
            downtime_limit_ms: None,
            postcopy_after_s: None,
            copy_storage: Default::default(),
            dirty_log: true,
        }
    }

    /// Runs the `pacer` CLI against this test bed.
    pub fn pacer(&self, args: &[&str]) -> Output {
        std::process::Command::new(workspace_bin("pacer"))
            .arg("--hosts-file")
            .arg(self.hosts_file())
            .args(args)
            .env("PACER_TESTBED_DIR", self.root.path())
            .output()
            .unwrap()
    }

    /// Starts a guest running the memory writer and waits until it reports.
    pub async fn start_guest(&self, host: &str, name: &str, memory_mib: u64, wss_mib: u64, rate_mbps: f64) -> VmInfo {
        let kind = if rate_mbps > 0.0 { "memwrite" } else { "idle" };
        let spec = guest_spec(name, memory_mib, vec![], Workload { kind: kind.into(), ..memwrite(wss_mib, rate_mbps, None) });
        let info = self.client(host).start_vm(&spec).await.expect("start VM");
        self.wait_status_line(host, name, 1).await;
        info
    }

    /// Starts a guest whose memory writer waits, paused, for the `resume` command.
    pub async fn start_guest_paused(&self, host: &str, name: &str, memory_mib: u64, wss_mib: u64, rate_mbps: f64) -> VmInfo {
        let spec = guest_spec(name, memory_mib, vec![], Workload { paused: true, ..memwrite(wss_mib, rate_mbps, None) });
        let info = self.client(host).start_vm(&spec).await.expect("start VM");
        self.wait_status_line(host, name, 1).await;
        info
    }

    /// Console text of a VM.
    pub async fn console(&self, host: &str, vm: &str) -> String {
        self.client(host).console(vm, 1_000_000).await.expect("console").text
    }

    /// Waits until the guest has printed at least `n` status lines.
    pub async fn wait_status_line(&self, host: &str, vm: &str, n: usize) {
        let t0 = Instant::now();
        loop {
            let text = self.console(host, vm).await;
            if status_count(&text) >= n {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(240), "guest {vm} never reported; console:\n{text}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Starts a migration through the API.
    pub async fn start_migration(&self, from: &str, to: &str, vm: &str, strategy: Strategy, f: impl FnOnce(&mut MigrateRequest)) -> JobInfo {
        let mut req = MigrateRequest::new(self.peer(to), strategy);
        f(&mut req);
        self.client(from).migrate(vm, &req).await.expect("start migration")
    }

    /// Waits for a job to end and returns its result.
    pub async fn wait_job(&self, host: &str, id: &str) -> MigrationResult {
        let t0 = Instant::now();
        loop {
            let j = self.client(host).job(id).await.expect("job");
            if let Some(r) = j.result {
                return r;
            }
            assert!(t0.elapsed() < Duration::from_secs(300), "job {id} did not end: {j:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until a job shows at least `bytes` transferred.
    pub async fn wait_transferred(&self, host: &str, id: &str, bytes: u64) {
        let t0 = Instant::now();
        loop {
            let j = self.client(host).job(id).await.expect("job");
            assert!(j.result.is_none(), "job ended early: {:?}", j.result);
            if j.progress.transferred >= bytes {
                return;
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "job {id} moved no data: {j:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// VMs on a host.
    pub async fn vms(&self, host: &str) -> Vec<VmInfo> {
        self.client(host).vms().await.expect("list")
    }

    /// Asserts the VM runs on `host` with a working guest whose memory verifies.
    pub async fn assert_runs_healthy(&self, host: &str, vm: &str) {
        let info = self.client(host).vm(vm).await.expect("show");
        assert_eq!(info.state, VmState::Running, "{vm} on {host}: {info:?}");
        let before = status_count(&self.console(host, vm).await);
        self.wait_status_line(host, vm, before + 1).await;
        let r = self.client(host).verify(vm).await.expect("verify");
        assert!(r.ok && r.bad_pages == 0 && r.pages_checked > 0, "memory check on {host}: {r:?}");
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        let _ = bed::down(self.root.path(), &self.bed.name);
    }
}

fn radix36(mut n: u64) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = Vec::new();
    loop {
        s.push(digits[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).unwrap()
}

/// A Pacer guest of the cached image with no disk and no workload of its own (the
/// guest program's defaults).
pub fn plain_spec(name: &str, memory_mib: u64) -> VmSpec {
    let img = image();
    VmSpec {
        name: name.into(),
        memory_mib,
        vcpus: 1,
        kernel: Some(img.kernel.display().to_string()),
        initrd: Some(img.initrd.display().to_string()),
        append: None,
        disks: vec![],
        workload: None,
        accel: AccelChoice::Auto,
    }
}

/// A Pacer guest of the cached image running `workload`.
fn guest_spec(name: &str, memory_mib: u64, disks: Vec<String>, workload: Workload) -> VmSpec {
    VmSpec { disks, workload: Some(workload), ..plain_spec(name, memory_mib) }
}

/// The memory writer over `wss_mib` at `rate_mbps`, uniform, with a disk writer if given.
fn memwrite(wss_mib: u64, rate_mbps: f64, disk: Option<pacer_api::DiskWorkload>) -> Workload {
    Workload { kind: "memwrite".into(), wss_mib, rate_mbps, hot_fraction: 0.0, hot_share: 0.0, disk, paused: false, app: None, unique: 0.0 }
}

/// Writes `pattern` over the first `len` of an image with qemu-io (e.g. "0x5a", "192M").
pub fn fill_image(path: &std::path::Path, format: &str, pattern: &str, len: &str) {
    let out = std::process::Command::new("qemu-io")
        .args(["-f", format, "-c", &format!("write -P {pattern} 0 {len}")])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The guest image (built once, cached).
pub fn image() -> GuestImage {
    static IMG: std::sync::OnceLock<GuestImage> = std::sync::OnceLock::new();
    IMG.get_or_init(|| ensure_guest_image(&ImageOptions::from_env()).expect("guest image"))
        .clone()
}

/// True if the process exists and is not a zombie (init may reap late).
pub fn process_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().and_then(|s| s.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// A disk workload for `start_guest_with_disks`: the benchmarks' uniform writer.
pub fn disk_writer(rate_mbps: f64) -> pacer_api::DiskWorkload {
    pacer_lab::live::uniform_disk_writer(rate_mbps, true)
}

impl TestBed {
    /// Starts a guest with disks and an optional disk writer; waits until the
    /// guest reports with its disk filled.
    pub async fn start_guest_with_disks(
        &self,
        host: &str,
        name: &str,
        memory_mib: u64,
        mem_rate_mbps: f64,
        disks: Vec<String>,
        disk: Option<pacer_api::DiskWorkload>,
    ) -> VmInfo {
        let spec = guest_spec(name, memory_mib, disks, memwrite(64, mem_rate_mbps, disk));
        let info = self.client(host).start_vm(&spec).await.expect("start VM");
        let has_disk_writer = spec.workload.as_ref().is_some_and(|w| w.disk.is_some());
        let t0 = Instant::now();
        loop {
            let text = self.console(host, name).await;
            // A status line, and with a disk writer one that shows it writing.
            let ready = scan(&text).any(|l| {
                matches!(l, GuestLine::Status(s) if !has_disk_writer || s.disk_phase == DiskPhase::Write)
            });
            if ready {
                return info;
            }
            assert!(t0.elapsed() < Duration::from_secs(240), "guest {name} never got ready:\n{text}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Creates a disk image.
pub fn make_image(path: &std::path::Path, format: &str, size: &str, backing: Option<&std::path::Path>) {
    let mut cmd = std::process::Command::new("qemu-img");
    cmd.args(["create", "-q", "-f", format]);
    if let Some(b) = backing {
        cmd.arg("-b").arg(b).args(["-F", "qcow2"]);
    }
    let st = cmd.arg(path).arg(size).status().unwrap();
    assert!(st.success());
}

/// Image files in a directory.
pub fn disk_files(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "qcow2" || x == "raw"))
        .collect()
}

/// Waits until `host` has no VM and no disk copy left (the destination cleaned up).
pub async fn wait_destination_clean(tb: &TestBed, host: &str) {
    let dir = tb.bed.host(host).unwrap().state_dir.join("vms");
    let t0 = Instant::now();
    while !tb.vms(host).await.is_empty() || !disk_files(&dir).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(40), "destination {host} kept {:?}", disk_files(&dir));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
