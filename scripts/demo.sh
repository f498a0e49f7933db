#!/usr/bin/env bash
# The demo: two test hosts joined by a 1 Gbit/s link, a 1 GiB guest writing
# memory, migrated live with progress; the guest checks its memory afterwards.
# Extra arguments go to `pacer demo` (e.g. --json, --strategy post-copy).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release -q -p pacer-cli -p pacerd
exec ./target/release/pacer demo "$@"
