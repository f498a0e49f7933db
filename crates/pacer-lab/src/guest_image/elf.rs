//! ELF files (read with the `object` crate; x86_64 guests, 64-bit little-endian):
//! static executables, sections and the shared libraries a program needs.

use super::{ImageError, Result};

type Elf64 = object::elf::FileHeader64<object::LittleEndian>;

/// The header of a 64-bit little-endian ELF file, or None for anything else.
pub(super) fn elf64(b: &[u8]) -> Option<&Elf64> {
    use object::read::elf::FileHeader;
    Elf64::parse(b)
        .ok()
        .filter(|h| h.is_class_64() && h.is_little_endian())
}

/// An x86_64 ELF executable that needs no dynamic loader (no PT_INTERP).
pub(super) fn check_static_elf(b: &[u8], what: &str) -> Result<()> {
    use object::read::elf::{FileHeader, ProgramHeader};
    let e = object::LittleEndian;
    let h = elf64(b)
        .filter(|h| h.e_machine(e) == object::elf::EM_X86_64)
        .ok_or_else(|| ImageError::Input(format!("{what} is not an x86_64 ELF executable")))?;
    let phdrs = h
        .program_headers(e, b)
        .map_err(|_| ImageError::Input(format!("{what}: truncated ELF program headers")))?;
    if phdrs.iter().any(|p| p.p_type(e) == object::elf::PT_INTERP) {
        return Err(ImageError::Input(format!(
            "{what} is dynamically linked; the guest has no libraries (build with RUSTFLAGS=\"-C target-feature=+crt-static\")"
        )));
    }
    Ok(())
}

/// Contents of the named section of an ELF file.
pub(super) fn elf_section<'a>(b: &'a [u8], name: &str) -> Option<&'a [u8]> {
    use object::read::elf::{FileHeader, SectionHeader};
    let e = object::LittleEndian;
    let sections = elf64(b)?.sections(e, b).ok()?;
    let (_, sh) = sections.section_by_name(e, name.as_bytes())?;
    sh.data(e, b).ok()
}

/// The shared libraries an ELF file names (its DT_NEEDED entries, in order);
/// empty for a static executable. What a program packed into the guest needs
/// beside it.
pub fn needed_libraries(b: &[u8]) -> Option<Vec<String>> {
    use object::read::elf::FileHeader;
    let e = object::LittleEndian;
    let sections = elf64(b)?.sections(e, b).ok()?;
    let table = sections.dynamic_table(e, b).ok()?;
    table
        .iter()
        .filter(|d| d.tag == object::elf::DT_NEEDED)
        .map(|d| {
            table
                .string(d)
                .ok()
                .map(|n| String::from_utf8_lossy(n).into_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// This test program is a dynamically linked x86_64 executable: the ELF
    /// reader sees its interpreter, its sections and the libraries it needs.
    #[test]
    fn elf_reading() {
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        let e = check_static_elf(&me, "the test").unwrap_err().to_string();
        assert!(e.contains("dynamically linked"), "{e}");
        assert!(elf_section(&me, ".text").is_some_and(|t| !t.is_empty()));
        assert!(elf_section(&me, ".no-such-section").is_none());
        let libs = needed_libraries(&me).unwrap();
        assert!(libs.iter().any(|l| l.starts_with("libc.so")), "{libs:?}");
        assert!(check_static_elf(b"#!/bin/sh\n", "a script")
            .unwrap_err()
            .to_string()
            .contains("not an x86_64 ELF"));
        assert_eq!(needed_libraries(b"not elf"), None);
        // The host's static busybox (the image's) needs nothing.
        if let Ok(b) = fs::read("/bin/busybox") {
            if check_static_elf(&b, "busybox").is_ok() {
                assert_eq!(needed_libraries(&b), Some(vec![]));
            }
        }
    }
}
