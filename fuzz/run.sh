#!/usr/bin/env bash
# Runs every fuzz target for N seconds each (default 30), one after another, from the
# committed seeds in fuzz/corpus/<target>/. What a run finds goes to a scratch corpus
# (fuzz/corpus/<target>.work/, ignored by git), so the committed seeds stay small; a
# crash is saved under fuzz/artifacts/<target>/ and stops the script with its status.
# Once fixed, the input goes to fuzz/regressions/<target>/: libFuzzer reads it as a seed
# and `cargo test --test fuzz_corpus` (stable) replays it with every corpus input.
#
#   fuzz/run.sh            # 30 s per target
#   fuzz/run.sh 10         # the CI smoke run
#   TARGETS="scan_request scan_reply" fuzz/run.sh 1800   # a long run of some targets
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
targets="${TARGETS:-scan_request scan_reply classify topology redirect split_merge}"

cargo +nightly fuzz build -O
for target in $targets; do
  work="corpus/$target.work"
  mkdir -p "$work" "corpus/$target"
  echo "fuzz: $target for ${seconds}s"
  log="$(mktemp)"
  status=0
  seeds=("corpus/$target")
  [ -d "regressions/$target" ] && seeds+=("regressions/$target")
  cargo +nightly fuzz run -O "$target" "$work" "${seeds[@]}" -- \
    -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  # The last status line (executions, coverage) and the final stats.
  grep -E '^#[0-9]+' "$log" | tail -1 || true
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true
  if [ "$status" != 0 ]; then
    tail -40 "$log"
    rm -f "$log"
    echo "fuzz: $target FAILED (the input is under fuzz/artifacts/$target/; once fixed, keep it in fuzz/regressions/$target/)"
    exit 1
  fi
  rm -f "$log"
done
echo "fuzz: every target ran ${seconds}s without a failure"
