#!/usr/bin/env bash
# Regenerates the hot-code layout, packaging/hot-code/relay.order.gz and
# relay-hot.ld.gz (layout.py says what they hold and why). Run it as root on
# a quiet machine after changes that move much code (a new dependency, a new
# toolchain); a stale layout still builds and runs the same, it only places
# less code well. What it builds is given back to the repository's owner.
#
# Two rounds, each: build the shipped binary with the layout so far and its
# link map, run it through workload.py's tiers with the disk's read-ahead off
# and a cold page cache (so that each page a relay has mapped is one it
# touched), and write the layout from what it touched. The read-ahead is
# restored when it ends, however it ends. About a minute once the static
# build exists, three or four from scratch.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
hot=packaging/hot-code
die() { echo "hot-code profile: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: it sets the disk's read-ahead and drops the page cache while it measures"
command -v swift >/dev/null || die "swift not found on PATH (under sudo: sudo env PATH=\"\$PATH\" $0)"
command -v wrk >/dev/null || die "wrk is not installed (bench/harness.sh installs it)"

# What it measures lives in the repository (.build-hot-code.*), so that the
# read-ahead turned off is the one of the disk it is read from: the whole
# disk's, when the file system is on a partition.
work=$(mktemp -d "$root/.build-hot-code.XXXXXX")
trap 'rm -rf "$work"' EXIT
dev=$(findmnt -n -o MAJ:MIN -T "$work" | tr -d ' ') || die "findmnt found no file system for $work"
sysdev=$(readlink -f "/sys/dev/block/$dev" 2>/dev/null || true)
[ -n "$sysdev" ] && [ -f "$sysdev/partition" ] && dev=$(cat "$sysdev/../dev")
ra=/sys/class/bdi/$dev/read_ahead_kb
[ -w "$ra" ] || die "$ra is not writable: the repository's file system ($dev) is on no block device whose read-ahead this can turn off"
old_ra=$(cat "$ra")
[ "$old_ra" -gt 0 ] || die "the read-ahead of $dev is already 0 (an interrupted run?): set it back first, e.g. echo 128 > $ra"
owner=$(stat -c %u:%g "$root")
trap 'echo "$old_ra" >"$ra"; rm -rf "$work"; chown -R "$owner" .build-static-fs .build-deb .build-release "$hot" 2>/dev/null || true' EXIT

echo "== bench drivers"
mkdir -p .build-release/bench-drivers
gcc -O2 -o .build-release/bench-drivers/loadgen bench/drivers/loadgen.c -lpthread
gcc -O2 -o .build-release/bench-drivers/sink bench/drivers/sink.c -lpthread

measure() { # binary tier -> json on stdout; a cold cache, no read-ahead
  echo 0 >"$ra"
  sync
  echo 3 >/proc/sys/vm/drop_caches
  PLAINFLOW_BENCH_BIN=$1 python3 "$hot/workload.py" "$2"
  echo "$old_ra" >"$ra"
}

for round in 1 2; do
  echo "== round $round: build with the layout so far"
  packaging/build-deb.sh --binary-only --link-map "$work/relay.map" >"$work/build.log" 2>&1 ||
    { tail -n 20 "$work/build.log" >&2; die "the build failed (log above)"; }
  # A copy that nothing else reads: once the cache is dropped, its cached pages are the relay's own.
  cp .build-deb/plainflow-relay "$work/plainflow-relay"
  for tier in idle work; do
    measure "$work/plainflow-relay" "$tier" >"$work/$tier.json"
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("   %s: RSS %s MiB, code pages touched %d" % (d["tier"], d["mem"]["rss_mib"], len(d["pages"].get("r-xp", []))))' "$work/$tier.json"
  done
  python3 "$hot/layout.py" "$work/plainflow-relay" "$work/relay.map" "$work" "$work/idle.json" "$work/work.json"
  gzip -9n <"$work/relay.order" >"$hot/relay.order.gz"
  gzip -9n <"$work/relay-hot.ld" >"$hot/relay-hot.ld.gz"
done
echo "== wrote $hot/relay.order.gz and $hot/relay-hot.ld.gz; build with them: packaging/build-deb.sh"
