#!/usr/bin/env bash
# Durable claims per second through the HTTP API, load from wrk in a separate process.
# Prints: claims/s and p50/p99 at 1 and 64 connections with group commit, the same path
# committing one transaction per claim, the claim path at 1 connection beside 2,000 silent
# sockets, raw rusqlite commits, RSS idle and under load with 10,000 offers cached, and the
# release binary size.
# Needs: wrk (apt-get install wrk), python3 (to write the 10,000-offer catalogue).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
cargo build --release -q -p caidan-agent
BIN=target/release/caidan-agent
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
story = {"id": "story", "brand": "lumi", "kind": "content", "title": {"zh": "故事", "en": "Story"}}
small = {"version": 1, "offers": [
    {"id": "bench-coupon", "brand": "lumi", "kind": "coupon", "title": {"zh": "券", "en": "Coupon"}}, story]}
big = {"version": 1, "offers": [story] + [
    {"id": f"offer-{i:05}", "brand": f"brand-{i % 50}", "kind": "coupon",
     "title": {"zh": f"优惠券 {i}", "en": f"Coupon number {i}"},
     "description": {"zh": "在柜台出示券码", "en": "Show the code at the counter"},
     "scenes": ["cinema", "campus"], "dayparts": [{"start": "06:00", "end": "23:00"}],
     "quota": {"per_device_per_day": 500, "per_shopper": 1}, "weight": 1 + i % 7} for i in range(9999)]}
json.dump(small, open(f"{work}/small.json", "w"))
json.dump(big, open(f"{work}/big.json", "w"))
PY

config() { # name catalogue max_batch [profile-caps]
  sed -e "s|^catalogue = .*|catalogue = \"$work/$2\"|" -e 's|^rotation_secs = 30|rotation_secs = 3600|' agent/demo/agent.toml > "$work/$1.toml"
  printf '\n[store]\ndir = "%s"\nmax_batch = %s\n' "$work/$1-data" "$3" >> "$work/$1.toml"
  # wrk drives the load from one address: lift the egg rates per client and per shopper and
  # the per-window claim cap. Connection caps and deadlines stay the profile's, except that
  # without profile-caps one address may open up to the total cap.
  printf '\n[limits]\neggs_per_client = { per_minute = 1000000, burst = 100000 }\neggs_per_shopper = { per_minute = 1000000, burst = 100000 }\nclaims_per_minute = 1000000\n' >> "$work/$1.toml"
  [ "${4:-}" = profile-caps ] || printf 'max_connections_per_client = 1024\n' >> "$work/$1.toml"
}

start() { # name -> sets PID, URL
  "$BIN" run --config "$work/$1.toml" --listen 127.0.0.1:0 --screen-listen 127.0.0.1:0 > "$work/$1.out" 2> "$work/$1.err" &
  PID=$!
  for _ in $(seq 1 100); do
    URL=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$work/$1.out")
    SCREEN=$(sed -n 's/^screen: *\(http[^ ]*\)\/ .*/\1/p' "$work/$1.out")
    [ -n "$URL" ] && [ -n "$SCREEN" ] && break
    sleep 0.1
  done
  [ -n "$URL" ] || { cat "$work/$1.err"; exit 1; }
}

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

ms() { # wrk latency (850.00us, 1.23ms, 2.00s) -> milliseconds
  awk -v t="$1" 'BEGIN { v = t + 0; if (t ~ /us$/) v /= 1000; else if (t ~ /[0-9]s$/ && t !~ /ms$/) v *= 1000; print v }'
}

load() { # label connections
  local token
  token=$(curl -s "$SCREEN/api/v1/qr" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  local threads=$(( $2 < 2 ? 1 : 2 ))
  TOKEN=$token RUN="$1-$2-$RANDOM" wrk -t"$threads" -c"$2" -d"$DURATION" --latency -s bench/claims.lua "$URL" > "$work/wrk.txt"
  if grep -q "Non-2xx" "$work/wrk.txt"; then cat "$work/wrk.txt"; echo "non-2xx answers: benchmark invalid"; exit 1; fi
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
  p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")
  P99_MS=$(ms "$p99")
  echo "$1 c=$2: $rps claims/s p50 $p50 p99 $p99"
}

config group small.json 512
config single small.json 1
config big big.json 512
config silent small.json 512 profile-caps

start group
load "group-commit" 1
load "group-commit" 64
kill "$PID"; wait "$PID" || true

start single
load "commit-per-claim" 1
load "commit-per-claim" 64
kill "$PID"; wait "$PID" || true

# Silent sockets: 2,000 connections that send nothing, reopened about a second after the
# agent closes one, with the profile's connection caps and deadlines; one shopper claims from
# 127.0.0.1 meanwhile. Once from one address (the per-client cap turns most away), once spread
# over 8 addresses (the total cap is full; the idlest connection makes room). Compared with
# the same agent's p99 just before, and its peak RSS with the profile's memory budget.
budget_mib=$(awk '/^\[memory\]/ { m = 1 } m && /^budget_mib/ { print $3; exit }' firmware-profiles/profiles/cinema-screen.toml)
silent() { # label sources
  python3 bench/silent_sockets.py 127.0.0.1 "${URL##*:}" 2000 $((${DURATION%s} + 6)) "$2" > "$work/silent.txt" &
  local flooder=$! peak=0 p99
  sleep 3
  ( load "$1" 1 > "$work/silentload.txt" ) &
  local loader=$!
  while kill -0 "$loader" 2>/dev/null; do r=$(rss_kb "$PID"); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.2; done
  wait "$flooder"
  cat "$work/silentload.txt" "$work/silent.txt"
  p99=$(ms "$(sed -n 's/.* p99 \([^ ]*\)$/\1/p' "$work/silentload.txt")")
  awk -v b="$base_p99" -v s="$p99" -v peak="$peak" -v mib="$budget_mib" -v l="$1" 'BEGIN {
    printf "%s: p99 %.3f ms vs %.3f ms without, ratio %.2f (limit 2.00); rss peak %d KiB, %.3f of the %d MiB budget\n", l, s, b, s / b, peak, peak / (mib * 1024), mib }'
}
start silent
load "silent-baseline" 1
base_p99=$P99_MS
silent "silent-2000-one-address" 127.0.0.3
silent "silent-2000-eight-addresses" 127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,127.0.0.8,127.0.0.9,127.0.0.10
echo "$(curl -s "$SCREEN/metrics" | grep -E 'reason="connection')"
kill "$PID"; wait "$PID" || true

cargo bench -q -p caidan-agent --bench sqlite_commit 2>/dev/null | grep rows/s

# Memory with 10,000 offers: first start imports the catalogue, second start loads it from the store.
start big
sleep 3
echo "rss idle, 10,000 offers, first start (imports catalogue): $(rss_kb "$PID") KiB"
kill "$PID"; wait "$PID" || true
start big
sleep 3
echo "rss idle, 10,000 offers, restart (catalogue from store): $(rss_kb "$PID") KiB"
peak=0
( load "10k-offers" 64 > "$work/bigload.txt" ) &
loader=$!
while kill -0 "$loader" 2>/dev/null; do r=$(rss_kb "$PID"); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.2; done
cat "$work/bigload.txt"
echo "rss peak under load (64 connections), 10,000 offers: $peak KiB"
kill "$PID"; wait "$PID" || true
echo "release binary: $(stat -c %s "$BIN") bytes"
