//! The real applications a guest can run as its workload (redis, memcached,
//! stress-ng, zstd), taken from Debian packages with every shared library
//! they need, and packed as a second cpio archive that the kernel unpacks
//! over the base one (`initrd-apps.img` = `initrd.img` + this archive).
//!
//! A separate archive keeps the base image, and so every guest that runs no
//! application, exactly as it was: same boot time, same pages to migrate.
//!
//! ```text
//! <cache>/apps/<set>/pkgs/<package>/   dpkg-deb -x of each package downloaded
//! <cache>/apps/<set>/packages.txt      what was downloaded, in order
//! ```
//!
//! `<set>` hashes [`APP_PACKAGES`] and the format. The packages are the
//! programs' own plus, layer by layer, the library packages their `Depends`
//! name, until every `DT_NEEDED` of every program and library is found (in
//! those packages first, then in the host's /lib and /usr/lib). A set that
//! no longer resolves (a host library gone) is downloaded again.

use super::debs::{apt_download, find_deb};
use super::initramfs::Cpio;
use super::{
    clean_stale_temps, io_err, nanos, needed_libraries, publish_dir, run, say, write_synced,
    ImageError, Result,
};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian packages holding the programs.
pub const APP_PACKAGES: &[&str] = &[
    "redis-server",
    "redis-tools",
    "memcached",
    "libmemcached-tools",
    "stress-ng",
    "zstd",
];

/// Programs packed into the guest, as paths inside the packages; each goes
/// to the same path in the guest.
pub const APP_PROGRAMS: &[&str] = &[
    // redis-server is a symlink to this one binary (it looks at argv[0]).
    "usr/bin/redis-check-rdb",
    "usr/bin/redis-benchmark",
    "usr/bin/redis-cli",
    "usr/bin/memcached",
    "usr/bin/memcaslap",
    "usr/bin/stress-ng",
    "usr/bin/zstd",
];

/// Symlinks in the guest: (path, target).
const APP_SYMLINKS: &[(&str, &str)] = &[("usr/bin/redis-server", "redis-check-rdb")];

/// Bump when the set's layout changes.
const SET_FORMAT: &str = "pacer-apps v1";

/// Where the guest's libraries go (a directory of glibc's default search path).
const GUEST_LIB_DIR: &str = "lib/x86_64-linux-gnu";

/// Library directories searched, in a package tree and on the host.
const LIB_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib64",
    "lib",
    "usr/lib",
];

/// Layers of `Depends` followed at most before giving up on a library.
const MAX_LAYERS: usize = 6;

/// The files of the apps archive, resolved.
pub struct AppFiles {
    /// (path in the guest, contents), programs and libraries.
    pub files: Vec<(String, Vec<u8>)>,
    /// What went in and where each file came from (for the manifest).
    pub manifest: String,
}

/// Downloads (once) and resolves the applications and their libraries.
pub fn ensure_app_files(cache: &Path, progress: bool) -> Result<AppFiles> {
    let set = ensure_set(cache, progress, false)?;
    match resolve(&set) {
        Ok(f) => Ok(f),
        Err(e) => {
            say(
                progress,
                format!("cached application packages no longer resolve ({e}); downloading again"),
            );
            let set = ensure_set(cache, progress, true)?;
            resolve(&set)
        }
    }
}

/// The archive that goes after the base initramfs: programs, libraries, the
/// dynamic loader, and the /etc/passwd memcached's `-u root` looks up.
pub fn apps_cpio(files: &AppFiles) -> Vec<u8> {
    // Inode numbers far from the base archive's (only hard links use them).
    let mut c = Cpio {
        out: Vec::new(),
        ino: 1 << 20,
    };
    for d in [
        "lib",
        GUEST_LIB_DIR,
        "lib64",
        "usr",
        "usr/bin",
        "etc",
        "run",
    ] {
        c.dir(d);
    }
    for (path, data) in &files.files {
        c.file(path, 0o755, data);
    }
    for (path, target) in APP_SYMLINKS {
        c.symlink(path, target);
    }
    c.file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n");
    c.file("etc/group", 0o644, b"root:x:0:\n");
    c.finish()
}

fn set_id() -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(SET_FORMAT.as_bytes());
    for p in APP_PACKAGES {
        h.update(p.as_bytes());
        h.update([0]);
    }
    super::hex(&h.finalize())[..12].to_string()
}

fn set_valid(d: &Path) -> bool {
    d.join("packages.txt").is_file() && d.join("pkgs").is_dir()
}

/// The downloaded package set (downloading it when missing or `refresh`).
fn ensure_set(cache: &Path, progress: bool, refresh: bool) -> Result<PathBuf> {
    let adir = cache.join("apps");
    let dest = adir.join(set_id());
    if !refresh && set_valid(&dest) {
        return Ok(dest);
    }
    fs::create_dir_all(&adir).map_err(io_err(format!("create {}", adir.display())))?;
    clean_stale_temps(&adir);
    let tmp = adir.join(format!(".tmp-{}-{}", std::process::id(), nanos()));
    let res = download_set(&tmp, progress);
    if let Err(e) = res {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if refresh {
        let _ = fs::remove_dir_all(&dest);
    }
    publish_dir(&tmp, &dest, set_valid)?;
    say(
        progress,
        format!("application packages cached in {}", dest.display()),
    );
    Ok(dest)
}

/// Downloads the packages into `tmp/pkgs/<name>/`, following library
/// `Depends` layer by layer until the programs resolve.
fn download_set(tmp: &Path, progress: bool) -> Result<()> {
    let debs = tmp.join("debs");
    let pkgs = tmp.join("pkgs");
    for d in [&debs, &pkgs] {
        fs::create_dir_all(d).map_err(io_err(format!("create {}", d.display())))?;
    }
    let mut updated = false;
    let mut tried: BTreeSet<String> = BTreeSet::new();
    let mut got: Vec<String> = Vec::new();
    // The programs' own packages must all come.
    for p in APP_PACKAGES {
        fetch_one(&debs, &pkgs, p, &mut updated, progress)?;
        tried.insert(p.to_string());
        got.push(p.to_string());
    }
    // The first layer of libraries always comes from packages (libc
    // included), so the programs run with the libraries they were built
    // with; deeper layers only while something is missing.
    let mut frontier: Vec<String> = got.clone();
    for layer in 0..MAX_LAYERS {
        if layer > 0 {
            match resolve(tmp) {
                Ok(_) => break,
                Err(e) => say(progress, format!("not resolved yet: {e}")),
            }
        }
        let mut next = Vec::new();
        for p in &frontier {
            for dep in library_depends(&pkgs.join(p))? {
                if tried.insert(dep.clone()) {
                    next.push(dep);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        for dep in &next {
            // A dependency that apt cannot give (a virtual package) is left
            // out: the resolution says whether it was needed.
            match fetch_one(&debs, &pkgs, dep, &mut updated, progress) {
                Ok(()) => got.push(dep.clone()),
                Err(e) => say(progress, format!("skipping {dep}: {e}")),
            }
        }
        frontier = next.into_iter().filter(|d| got.contains(d)).collect();
    }
    resolve(tmp)?;
    let _ = fs::remove_dir_all(&debs);
    write_synced(
        &tmp.join("packages.txt"),
        (got.join("\n") + "\n").as_bytes(),
    )
}

/// `apt-get download` and `dpkg-deb -x` of one package into `pkgs/<name>`.
fn fetch_one(
    debs: &Path,
    pkgs: &Path,
    name: &str,
    updated: &mut bool,
    progress: bool,
) -> Result<()> {
    apt_download(debs, name, updated, progress)?;
    let deb = find_deb(debs, name)?;
    let root = pkgs.join(name);
    run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
        "this needs Debian's dpkg",
    )?;
    // Keep its Depends beside it for the next layer.
    let out = run(
        Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Depends"),
        "this needs Debian's dpkg",
    )?;
    write_synced(&root.join(".depends"), &out.stdout)
}

/// The library packages an extracted package's Depends names (the first of
/// each set of alternatives, versions and arch qualifiers dropped).
fn library_depends(root: &Path) -> Result<Vec<String>> {
    let text = fs::read_to_string(root.join(".depends")).unwrap_or_default();
    Ok(parse_library_depends(&text))
}

fn parse_library_depends(text: &str) -> Vec<String> {
    text.split(',')
        .filter_map(|alt| alt.split('|').next())
        .map(|d| {
            let name = d.trim().split([' ', '(']).next().unwrap_or("");
            name.split(':').next().unwrap_or("").to_string()
        })
        .filter(|n| n.starts_with("lib") || n == "zlib1g")
        .collect()
}

/// Follows symlinks inside a package tree (absolute targets are taken
/// relative to the tree's root, not the host's).
fn real_file(root: &Path, mut p: PathBuf) -> Option<PathBuf> {
    for _ in 0..16 {
        let meta = fs::symlink_metadata(&p).ok()?;
        if !meta.file_type().is_symlink() {
            return meta.is_file().then_some(p);
        }
        let t = fs::read_link(&p).ok()?;
        p = if t.is_absolute() {
            root.join(t.strip_prefix("/").ok()?)
        } else {
            p.parent()?.join(t)
        };
    }
    None
}

/// Where a library was found.
struct Found {
    path: PathBuf,
    from: String,
}

fn find_library(set: &Path, trees: &[String], soname: &str) -> Option<Found> {
    for t in trees {
        let root = set.join("pkgs").join(t);
        for d in LIB_DIRS {
            if let Some(path) = real_file(&root, root.join(d).join(soname)) {
                return Some(Found {
                    path,
                    from: format!("package {t}"),
                });
            }
        }
    }
    for d in LIB_DIRS {
        let p = Path::new("/").join(d).join(soname);
        if let Ok(path) = fs::canonicalize(&p) {
            if path.is_file() {
                return Some(Found {
                    path,
                    from: "host".into(),
                });
            }
        }
    }
    None
}

/// The dynamic loader an ELF program names (PT_INTERP), if any.
fn interpreter(b: &[u8]) -> Option<String> {
    use object::read::elf::{FileHeader, ProgramHeader};
    let e = object::LittleEndian;
    let h = super::elf::elf64(b)?;
    let phdrs = h.program_headers(e, b).ok()?;
    let p = phdrs
        .iter()
        .find(|p| p.p_type(e) == object::elf::PT_INTERP)?;
    let data = p.data(e, b).ok()?;
    let s = String::from_utf8_lossy(data);
    Some(s.trim_end_matches('\0').to_string())
}

/// Every program with its library closure and loader, or an error naming
/// what is missing.
fn resolve(set: &Path) -> Result<AppFiles> {
    let mut trees: Vec<String> = fs::read_dir(set.join("pkgs"))
        .map_err(io_err(format!("read {}", set.join("pkgs").display())))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    trees.sort();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut manifest = String::from("applications:\n");
    let mut libs: BTreeMap<String, (Found, Vec<u8>)> = BTreeMap::new();
    let mut todo: Vec<(String, String)> = Vec::new(); // (soname, needed by)
    let mut loaders: BTreeSet<String> = BTreeSet::new();
    for prog in APP_PROGRAMS {
        let found = trees.iter().find_map(|t| {
            let root = set.join("pkgs").join(t);
            real_file(&root, root.join(prog)).map(|p| (t.clone(), p))
        });
        let (tree, path) = found.ok_or_else(|| {
            ImageError::Input(format!(
                "{prog} is in none of the packages {APP_PACKAGES:?} (has Debian moved it?)"
            ))
        })?;
        let data = fs::read(&path).map_err(io_err(format!("read {}", path.display())))?;
        let needed = needed_libraries(&data).ok_or_else(|| {
            ImageError::Input(format!(
                "{} is not a readable x86_64 ELF file",
                path.display()
            ))
        })?;
        if let Some(i) = interpreter(&data) {
            loaders.insert(i);
        }
        manifest.push_str(&format!(
            "  /{prog} (package {tree}) needs {}\n",
            needed.join(" ")
        ));
        todo.extend(needed.into_iter().map(|n| (n, prog.to_string())));
        files.push((prog.to_string(), data));
    }
    let mut missing: Vec<String> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    while let Some((soname, by)) = todo.pop() {
        if !seen.insert(soname.clone()) {
            continue;
        }
        let Some(found) = find_library(set, &trees, &soname) else {
            missing.push(format!("{soname} (needed by {by})"));
            continue;
        };
        let data =
            fs::read(&found.path).map_err(io_err(format!("read {}", found.path.display())))?;
        let needed = needed_libraries(&data).unwrap_or_default();
        todo.extend(needed.into_iter().map(|n| (n, soname.clone())));
        libs.insert(soname, (found, data));
    }
    if !missing.is_empty() {
        missing.sort();
        return Err(ImageError::Input(format!(
            "libraries not found in the downloaded packages nor on the host: {}",
            missing.join(", ")
        )));
    }
    // The loader is glibc's ld-linux-x86-64.so.2: the same file a program
    // may also name as a library; it goes where PT_INTERP says.
    for l in &loaders {
        let name = Path::new(l)
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !libs.contains_key(&name) {
            let found = find_library(set, &trees, &name).ok_or_else(|| {
                ImageError::Input(format!(
                    "the dynamic loader {l} is in no package nor on the host"
                ))
            })?;
            let data =
                fs::read(&found.path).map_err(io_err(format!("read {}", found.path.display())))?;
            libs.insert(name.clone(), (found, data));
        }
        let (found, data) = &libs[&name];
        let guest = l.trim_start_matches('/').to_string();
        if guest != format!("{GUEST_LIB_DIR}/{name}") {
            manifest.push_str(&format!("  {l} (loader, {})\n", found.from));
            files.push((guest, data.clone()));
        }
    }
    manifest.push_str("libraries:\n");
    for (soname, (found, data)) in libs {
        manifest.push_str(&format!(
            "  /{GUEST_LIB_DIR}/{soname} <- {} ({})\n",
            found.path.display(),
            found.from
        ));
        files.push((format!("{GUEST_LIB_DIR}/{soname}"), data));
    }
    Ok(AppFiles { files, manifest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_depends_parsing() {
        let d = "adduser, libatomic1 (>= 4.8), libc6 (>= 2.34), perl:any, libegl1 | libegl-mesa0, \
                 zlib1g (>= 1:1.1.4), lsb-base";
        assert_eq!(
            parse_library_depends(d),
            ["libatomic1", "libc6", "libegl1", "zlib1g"]
        );
        assert!(parse_library_depends("").is_empty());
    }

    #[test]
    fn symlinks_stay_inside_the_tree() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::write(root.join("usr/lib/libx.so.1.2"), b"x").unwrap();
        std::os::unix::fs::symlink("/usr/lib/libx.so.1.2", root.join("usr/lib/libx.so.1")).unwrap();
        std::os::unix::fs::symlink("libx.so.1", root.join("usr/lib/libx.so")).unwrap();
        assert_eq!(
            real_file(root, root.join("usr/lib/libx.so")),
            Some(root.join("usr/lib/libx.so.1.2"))
        );
        assert_eq!(real_file(root, root.join("usr/lib/nope")), None);
    }

    /// The real packages: every program resolves, with glibc's loader.
    #[test]
    fn app_packages_resolve() {
        let opts = super::super::ImageOptions::from_env();
        let f = ensure_app_files(&opts.cache_dir, true).expect("application packages");
        let names: Vec<&str> = f.files.iter().map(|(p, _)| p.as_str()).collect();
        for p in APP_PROGRAMS {
            assert!(names.contains(p), "{p} missing");
        }
        assert!(names.contains(&"lib64/ld-linux-x86-64.so.2"), "{names:?}");
        assert!(
            names.contains(&"lib/x86_64-linux-gnu/libc.so.6"),
            "{names:?}"
        );
        assert!(
            names.contains(&"lib/x86_64-linux-gnu/libjemalloc.so.2"),
            "{names:?}"
        );
        let total: usize = f.files.iter().map(|(_, d)| d.len()).sum();
        eprintln!(
            "{} files, {:.1} MiB\n{}",
            f.files.len(),
            total as f64 / (1 << 20) as f64,
            f.manifest
        );
        // Cached: a second call downloads nothing and gives the same files.
        let again = ensure_app_files(&opts.cache_dir, false).unwrap();
        assert_eq!(again.files.len(), f.files.len());
    }
}
