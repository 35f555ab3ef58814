#!/usr/bin/env bash
# The simulator's scale benchmark: bench/sim-fleet.toml with COUNT agents per scene (seven
# scenes), each run in release, printing the summary line and the verdicts.
#   bench/sim-fleet.sh 36 72 143      # 252, 504 and 1001 agents
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p caidan-sim
for count in "${@:-143}"; do
  dir=$(mktemp -d)
  sed "s/COUNT/$count/g" bench/sim-fleet.toml > "$dir/scenario.toml"
  echo "== $((count * 7)) agents"
  CI=true /usr/bin/time -f "wall %e s, max RSS %M KiB" \
    target/release/caidan-sim run --scenario "$dir/scenario.toml" --out "$dir/report" \
    | grep -E "^(simulated|PASS|FAIL|     )" || true
  python3 - "$dir/report/summary.json" "$((count * 7))" <<'PY'
import json, sys
s = json.load(open(sys.argv[1])); n = int(sys.argv[2]); t = s["timing"]
print(f"agents {n}: achieved {t['achieved_speed']:.1f}x over the span, "
      f"{t['events_per_sec']:.0f} events/s end to end, peak RSS {t['peak_rss_kib']/1024:.0f} MiB "
      f"= {t['peak_rss_kib']/n:.0f} KiB per agent, all hold: {s['all_hold']}")
PY
  rm -rf "$dir"
done
