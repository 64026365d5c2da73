#!/usr/bin/env bash
# Exits 0 when every program of the test control plane that up.sh started is still running,
# listing them; 1 (naming the stopped ones) otherwise.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${GUST_CLUSTER_DIR:-$(cd "$here/../.." && pwd)/target/cluster}
status=0
shopt -s nullglob
pids=("$dir"/pids/*.pid)
[ ${#pids[@]} -gt 0 ] || { echo "no control plane in $dir"; exit 1; }
for file in "${pids[@]}"; do
  name=$(basename "$file" .pid)
  if kill -0 "$(cat "$file")" 2>/dev/null; then
    echo "$name: running (pid $(cat "$file"))"
  else
    echo "$name: stopped (see $dir/logs/$name.log)"
    status=1
  fi
done
exit $status
