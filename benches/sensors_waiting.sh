#!/usr/bin/env bash
# Benchmark: 10,000 native sensors waiting in one scheduler (crates/gust-sensors/benches/
# waiting.rs): the scheduler process's RSS per waiting sensor and its CPU per poke, on SQLite,
# then on PostgreSQL when GUST_TEST_POSTGRES_URL names a server. Each engine runs in a process
# of its own, so RSS figures are not mixed. Results go in docs/benchmarks.md.
#
#   benches/sensors_waiting.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --locked --offline -p gust-sensors --bench waiting --no-run
for engine in sqlite postgres; do
  cargo bench --locked --offline -p gust-sensors --bench waiting -- "$engine"
done
