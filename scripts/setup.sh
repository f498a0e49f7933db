#!/usr/bin/env bash
# Installs what Pacer needs on a Debian bookworm machine, only what is missing:
# QEMU 10 from bookworm-backports (7.2 is unsupported), busybox-static, cpio,
# iproute2, promtool (Debian's prometheus) and a Rust toolchain check. Safe to re-run.
set -euo pipefail

need_root() { if [ "$(id -u)" != 0 ]; then echo "setup: run as root (apt-get, network namespaces)" >&2; exit 1; fi; }

qemu_ok() {
  command -v qemu-system-x86_64 >/dev/null 2>&1 || return 1
  local v; v=$(qemu-system-x86_64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p' | head -1)
  [ "${v:-0}" -ge 10 ]
}

missing=()
qemu_ok || missing+=(qemu-system-x86 qemu-utils)
# The guest image needs the static busybox (the dynamic one cannot run in it).
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || missing+=(busybox-static)
command -v cpio >/dev/null 2>&1 || missing+=(cpio)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v tc >/dev/null 2>&1 || missing+=(iproute2)
command -v gzip >/dev/null 2>&1 || missing+=(gzip)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v file >/dev/null 2>&1 || missing+=(file)
# promtool checks the agents' /metrics in the tests.
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)

if [ ${#missing[@]} -gt 0 ]; then
  need_root
  src=/etc/apt/sources.list.d/bookworm-backports.sources
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
    cat > "$src" <<EOS
Types: deb
URIs: ${mirror:-http://deb.debian.org/debian}
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
  fi
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -q >/dev/null
  # QEMU and its tools from backports; the rest from the main suite.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm-backports qemu-system-x86 qemu-utils >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static cpio iproute2 gzip python3 file >/dev/null
  # Only its promtool is used; the package's own Prometheus server is not started here.
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null
  fi
fi
qemu_ok || { echo "setup: QEMU >= 10 is required (found: $(qemu-system-x86_64 --version 2>/dev/null | head -1))" >&2; exit 1; }

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo (Rust) is required; install it with rustup" >&2; exit 1; }
