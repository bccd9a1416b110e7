#!/bin/bash
# Usage: scripts/bench-cluster.sh [SET] [RUNS] [BIN_DIR]
#
# The cluster benchmark: backtests SET (default: x10) of txflow-bench's data sets
# (target/bench/SET, made by `txflow-bench --sets SET` on first use) with Mechanism Y as
# 1 process x 2 workers and as 2 processes x 1 worker on this machine, alternately, RUNS times
# (default 3), and prints for each run the wall time (from starting the processes until
# all have exited, so the cluster's connection set-up is included), the time from the first
# epoch's commit to the last one's (set-up excluded, the same measure for both) and each
# process's peak RSS (GNU time's maximum resident set size).
set -euo pipefail
set_name=${1:-x10}
runs=${2:-3}
bin=${3:-target/release}
data=target/bench/$set_name
[[ -d $data/landing ]] || { echo "no $data/landing: run txflow-bench --sets $set_name first" >&2; exit 2; }
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (/usr/bin/time; Debian package time)" >&2; exit 2; }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export RUST_LOG=info

y() { # y DIR ARGS...: one mechanism-y process, its peak RSS in DIR/rss
  local dir=$1; shift
  /usr/bin/time -f %M -o "$dir/rss" "$bin/mechanism-y" --landing "$data/landing" \
    --importance "$data/data/CustomerImportance.csv" --output "$dir/out" \
    --state "sqlite://$dir/state.db" --replay "$@" >"$dir/log" 2>&1
}

# Seconds from the first "epoch committed" log line of DIR/log to the last.
commits_span() {
  python3 - "$1/log" <<'PY'
import sys, datetime
stamps = [l.split()[0] for l in open(sys.argv[1], errors="replace") if "epoch committed" in l]
t = [datetime.datetime.fromisoformat(s.rstrip("Z")) for s in (stamps[0], stamps[-1])]
print("%.2f" % (t[1] - t[0]).total_seconds())
PY
}

# Seconds between two `date +%s%N` readings (bash arithmetic: no bc needed).
seconds() { local ms=$(( ($2 - $1) / 1000000 )); printf '%d.%02d' $(( ms / 1000 )) $(( ms % 1000 / 10 )); }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for run in $(seq "$runs"); do
  d=$scratch/single-$run; mkdir -p "$d"
  start=$(date +%s%N)
  y "$d" -w 2
  end=$(date +%s%N)
  printf 'run %s  1 process x 2 workers:   %6.2f s (commits %s s)  peak RSS %s MiB\n' "$run" \
    "$(seconds "$start" "$end")" "$(commits_span "$d")" "$(( $(cat "$d/rss") / 1024 ))"

  hosts=$scratch/hosts-$run
  printf '127.0.0.1:%s\n127.0.0.1:%s\n' "$(free_port)" "$(free_port)" >"$hosts"
  start=$(date +%s%N)
  for p in 0 1; do
    d=$scratch/cluster-$run-p$p; mkdir -p "$d"
    y "$d" -w 1 -n 2 -p "$p" -h "$hosts" &
  done
  wait
  end=$(date +%s%N)
  printf 'run %s  2 processes x 1 worker: %6.2f s (commits %s s)  peak RSS %s and %s MiB\n' "$run" \
    "$(seconds "$start" "$end")" "$(commits_span "$scratch/cluster-$run-p0")" \
    "$(( $(cat "$scratch/cluster-$run-p0/rss") / 1024 ))" \
    "$(( $(cat "$scratch/cluster-$run-p1/rss") / 1024 ))"
  cmp -s "$scratch/single-$run/out/detections-000000.csv" \
    "$scratch/cluster-$run-p0/out/detections-000000.csv" ||
    echo "  the cluster's first detection file differs from the single process's!" >&2
done
