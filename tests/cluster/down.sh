#!/usr/bin/env bash
# Stops the test control plane that up.sh started (each program by its recorded process id:
# SIGTERM, then SIGKILL after 10 s) and removes its folder. --keep-logs keeps the logs/ folder.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${GUST_CLUSTER_DIR:-$(cd "$here/../.." && pwd)/target/cluster}
keep_logs=false
[ "${1:-}" = --keep-logs ] && keep_logs=true
[ -d "$dir" ] || exit 0
shopt -s nullglob
# The nodes and controllers first, etcd last, so nothing logs a lost store on the way down.
for name in nodesim kube-scheduler kube-controller-manager kube-apiserver etcd; do
  file=$dir/pids/$name.pid
  [ -f "$file" ] || continue
  pid=$(cat "$file")
  # Each program was started with setsid: its process group has its id.
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$file"
done
if $keep_logs; then
  find "$dir" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
  echo "down.sh: stopped; logs kept in $dir/logs" >&2
else
  rm -rf "$dir"
  echo "down.sh: stopped and removed $dir" >&2
fi
