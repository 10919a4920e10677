#!/usr/bin/env bash
# Folds what fuzz runs found (fuzz/corpus/<target>.work/) into the committed seeds
# (fuzz/corpus/<target>/), keeping a small set of inputs that adds their coverage
# (libFuzzer's -set_cover_merge=1: about 40% fewer files than -merge=1), so the seeds
# grow by what matters and `tests/fuzz_corpus.rs` replays it.
#
#   fuzz/merge.sh                       # every target that has a .work corpus
#   TARGETS="topology" fuzz/merge.sh
#
# Needs the nightly toolchain and cargo-fuzz, like fuzz/run.sh.
set -euo pipefail
cd "$(dirname "$0")"
targets="${TARGETS:-scan_request scan_reply classify topology redirect split_merge}"

cargo +nightly fuzz build -O
for target in $targets; do
  work="corpus/$target.work"
  [ -d "$work" ] || { echo "merge: $target: no $work, skipped"; continue; }
  before=$(find "corpus/$target" -type f | wc -l)
  cargo +nightly fuzz run -O "$target" "corpus/$target" "$work" -- \
    -set_cover_merge=1 -max_len=8192 -timeout=10 -rss_limit_mb=2048 >/dev/null 2>&1
  after=$(find "corpus/$target" -type f | wc -l)
  echo "merge: $target: $before -> $after seeds ($(du -sh --apparent-size "corpus/$target" | cut -f1))"
done
