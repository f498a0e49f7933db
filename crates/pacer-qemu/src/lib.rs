//! pacer-qemu
