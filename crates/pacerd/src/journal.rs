//! Records on disk, one JSON file each, written atomically (a temporary file
//! renamed over the old one), so a crash leaves the old record or the new one,
//! never half of either. VMs, incoming migrations and groups are kept this way
//! so that a restarted agent picks them up again.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::warn;

/// A directory of JSON records named `<key>.json`.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// The journal in `dir` (created if missing).
    pub fn open(dir: PathBuf) -> std::io::Result<Journal> {
        std::fs::create_dir_all(&dir)?;
        Ok(Journal { dir })
    }

    /// The record file of `key`.
    pub fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// Writes `key`'s record atomically, readable by the agent's user only (a
    /// group's record holds its peers' tokens).
    pub fn write<T: Serialize>(&self, key: &str, rec: &T) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path(key);
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(rec)?)?;
        f.sync_data()?;
        std::fs::rename(tmp, path)
    }

    /// Removes `key`'s record (a missing one is fine).
    pub fn remove(&self, key: &str) {
        let _ = std::fs::remove_file(self.path(key));
    }

    /// Every readable record; unreadable ones are logged and skipped.
    pub fn read_all<T: DeserializeOwned>(&self) -> Vec<T> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut out = Vec::new();
        for ent in dir.flatten() {
            let path = ent.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match read(&path) {
                Ok(r) => out.push(r),
                Err(e) => warn!("ignoring unreadable record {}: {e}", path.display()),
            }
        }
        out
    }
}

fn read<T: DeserializeOwned>(path: &Path) -> Result<T, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_broken_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path().join("j")).unwrap();
        j.write("a", &vec![1, 2]).unwrap();
        j.write("b", &vec![3]).unwrap();
        std::fs::write(j.path("c"), b"{not json").unwrap();
        let mut all: Vec<Vec<i32>> = j.read_all();
        all.sort();
        assert_eq!(all, vec![vec![1, 2], vec![3]]);
        j.remove("a");
        j.remove("missing");
        assert_eq!(j.read_all::<Vec<i32>>(), vec![vec![3]]);
    }
}
