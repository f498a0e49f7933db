#!/usr/bin/env bash
# The demo: two test hosts joined by a 1 Gbit/s link, a 1 GiB guest writing
# memory, migrated live with progress; the guest checks its memory afterwards.
# Extra arguments go to `pacer-lab demo` (e.g. --json, --strategy post-copy).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# The demo runs pacer-lab, which starts the pacerd agents found beside it.
cargo build --release -q -p pacer-lab -p pacerd
exec ./target/release/pacer-lab demo "$@"
