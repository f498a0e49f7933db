//! Kernel modules: found in the extracted kernel package, decompressed and
//! ordered so that each comes after what its `.modinfo` `depends=` names.

use super::elf::elf_section;
use super::{io_err, run, ImageError, Result};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(super) struct Module {
    pub(super) name: String,
    /// Uncompressed .ko bytes.
    pub(super) data: Vec<u8>,
}

/// Reads a module, decompressing `.ko.xz`, `.ko.zst` and `.ko.gz`.
fn read_module(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".ko.xz") {
        Some("xz")
    } else if name.ends_with(".ko.zst") {
        Some("zstd")
    } else if name.ends_with(".ko.gz") {
        Some("gzip")
    } else {
        None
    };
    match tool {
        None => fs::read(path).map_err(io_err(format!("read {}", path.display()))),
        Some(t) => {
            let hint = format!(
                "install {} to unpack compressed modules",
                if t == "xz" { "xz-utils" } else { t }
            );
            Ok(run(Command::new(t).arg("-dc").arg(path), &hint)?.stdout)
        }
    }
}

fn index_modules(dir: &Path, out: &mut HashMap<String, PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir)
        .map_err(io_err(format!("read {}", dir.display())))?
        .flatten()
    {
        let p = e.path();
        let ft = e
            .file_type()
            .map_err(io_err(format!("stat {}", p.display())))?;
        if ft.is_dir() {
            index_modules(&p, out)?;
        } else {
            let f = e.file_name().to_string_lossy().into_owned();
            for ext in [".ko", ".ko.xz", ".ko.zst", ".ko.gz"] {
                if let Some(stem) = f.strip_suffix(ext) {
                    out.entry(normalize_module_name(stem)).or_insert(p.clone());
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The wanted modules and everything they depend on, dependencies first.
/// A module that is built into the kernel (modules.builtin) is skipped.
pub(super) fn resolve_modules(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<Module>> {
    let mut index = HashMap::new();
    index_modules(&modules_dir.join("kernel"), &mut index)?;
    let builtin: HashSet<String> = fs::read_to_string(modules_dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .filter_map(|f| f.strip_suffix(".ko"))
        .map(normalize_module_name)
        .collect();

    fn visit(
        name: &str,
        index: &HashMap<String, PathBuf>,
        builtin: &HashSet<String>,
        visiting: &mut HashSet<String>,
        done: &mut HashSet<String>,
        out: &mut Vec<Module>,
    ) -> Result<()> {
        if done.contains(name) {
            return Ok(());
        }
        if !visiting.insert(name.to_string()) {
            return Err(ImageError::Kernel(format!(
                "module dependency cycle through {name}"
            )));
        }
        match index.get(name) {
            Some(path) => {
                let data = read_module(path)?;
                let deps = module_depends(&data).ok_or_else(|| {
                    ImageError::Kernel(format!("{} has no readable .modinfo", path.display()))
                })?;
                for d in &deps {
                    visit(d, index, builtin, visiting, done, out)?;
                }
                out.push(Module {
                    name: name.to_string(),
                    data,
                });
            }
            None if builtin.contains(name) => {}
            None => {
                return Err(ImageError::Kernel(format!(
                    "module {name} is neither in the package nor built in"
                )))
            }
        }
        visiting.remove(name);
        done.insert(name.to_string());
        Ok(())
    }

    let (mut visiting, mut done, mut out) = (HashSet::new(), HashSet::new(), Vec::new());
    for w in wanted {
        visit(
            &normalize_module_name(w),
            &index,
            &builtin,
            &mut visiting,
            &mut done,
            &mut out,
        )?;
    }
    Ok(out)
}

/// The `depends=` list of a kernel module (what `modinfo -F depends` says).
fn module_depends(ko: &[u8]) -> Option<Vec<String>> {
    let info = elf_section(ko, ".modinfo")?;
    for entry in info.split(|&c| c == 0) {
        if let Some(v) = entry.strip_prefix(b"depends=") {
            let v = String::from_utf8_lossy(v);
            return Some(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(normalize_module_name)
                    .collect(),
            );
        }
    }
    Some(Vec::new())
}

fn normalize_module_name(n: &str) -> String {
    n.replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::super::{debs::ensure_kernel, ImageOptions, GUEST_MODULES};
    use super::*;

    /// Every module comes after the modules its .modinfo depends on, and
    /// all wanted modules are there (none is built into the cloud kernel).
    #[test]
    fn module_order_respects_depends() {
        let opts = ImageOptions::from_env();
        let kernel = ensure_kernel(&opts.cache_dir, true).expect("kernel package");
        let mods = resolve_modules(&kernel.modules_dir, GUEST_MODULES).unwrap();
        let names: Vec<&str> = mods.iter().map(|m| m.name.as_str()).collect();
        eprintln!("kernel {}: modules {names:?}", kernel.version);
        for w in GUEST_MODULES {
            assert!(names.contains(w), "{w} missing from {names:?}");
        }
        for (i, m) in mods.iter().enumerate() {
            for d in module_depends(&m.data).unwrap() {
                let j = names
                    .iter()
                    .position(|n| *n == d)
                    .unwrap_or_else(|| panic!("{d} missing"));
                assert!(j < i, "{} loaded before its dependency {d}", m.name);
            }
        }
    }
}
