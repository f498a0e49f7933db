//! Where hosts files are: the one rule the CLI reads them by and test beds
//! publish theirs by.
//!
//! In order: `$PACER_HOSTS`, `~/.config/pacer/hosts.json`, or the hosts file of
//! the one test bed that is up. Test beds keep their files under
//! [`testbeds_root`] (`<root>/<name>/hosts.json`).

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// The name of a test bed's hosts file in its directory (`<root>/<name>/hosts.json`).
pub const TESTBED_HOSTS_FILE: &str = "hosts.json";

/// Where test beds keep their files: `$PACER_TESTBED_DIR`,
/// `/var/lib/pacer/testbeds` as root, else `~/.local/state/pacer/testbeds`.
pub fn testbeds_root() -> PathBuf {
    if let Ok(p) = std::env::var("PACER_TESTBED_DIR") {
        return PathBuf::from(p);
    }
    // /proc/self belongs to the effective user.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if root {
        return PathBuf::from("/var/lib/pacer/testbeds");
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    PathBuf::from(home).join(".local/state/pacer/testbeds")
}

/// Hosts files of the test beds that are up under [`testbeds_root`], sorted.
pub fn testbed_hosts_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(testbeds_root())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(TESTBED_HOSTS_FILE))
        .filter(|p| p.exists())
        .collect();
    v.sort();
    v
}

/// The hosts file to use when none is named: `$PACER_HOSTS`,
/// `~/.config/pacer/hosts.json`, or the one test bed that is up (None when there
/// is none, or several).
pub fn default_hosts_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PACER_HOSTS") {
        return Some(PathBuf::from(p));
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let user = PathBuf::from(home).join(".config/pacer/hosts.json");
    if user.exists() {
        return Some(user);
    }
    match testbed_hosts_files().as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}
