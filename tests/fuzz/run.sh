#!/usr/bin/env bash
# Runs the libFuzzer targets of a DINGO_FUZZ build (make test, make fuzz, docs/fuzzing.md).
#   run.sh [--ctest|--merge] BUILD_DIR SECONDS [TARGET...]
# Default (make fuzz): each target (all when none are named) runs SECONDS from its
#   checked-in corpus (tests/fuzz/corpus/TARGET) plus the inputs of earlier runs; new
#   inputs go to BUILD_DIR/fuzz/corpus/TARGET, crashes to BUILD_DIR/fuzz/findings/TARGET/.
# --ctest: one target, SECONDS, from the checked-in corpus only (a fresh scratch folder).
# --merge: adds to the checked-in corpus the inputs of BUILD_DIR/fuzz/corpus/TARGET that
#   reach code it does not (libFuzzer's -merge=1); SECONDS is ignored.
set -uo pipefail

mode=fuzz
case "${1:-}" in
  --ctest) mode=ctest; shift ;;
  --merge) mode=merge; shift ;;
esac
if [ $# -lt 2 ]; then
  sed -n '2,10p' "$0" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for bin in "$build"/bin/fuzz_*; do targets+=("${bin##*/fuzz_}"); done
fi

# Per-target options: the dictionary, and inputs larger than libFuzzer's 4 KiB default
# where the parser has a reason to see them (a WebSocket frame or command up to the
# 64 KiB default max_message_size, a request head up to max_header_bytes with a body).
options() {
  local t=$1
  case $t in
    ws_command) echo "-dict=$here/dict/json.dict -max_len=65536" ;;
    control_request) echo "-dict=$here/dict/json.dict -max_len=70000" ;;
    nodes) echo "-dict=$here/dict/json.dict" ;;
    http_request) echo "-dict=$here/dict/http.dict -max_len=16384" ;;
    config) echo "-dict=$here/dict/toml.dict" ;;
    ws_frame) echo "-max_len=70000" ;;
  esac
}

# The sanitizers fail fast; a leak is a finding like a crash.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

status=0
for t in "${targets[@]}"; do
  bin="$build/bin/fuzz_$t"
  corpus="$here/corpus/$t"
  if [ ! -x "$bin" ]; then
    echo "run.sh: no fuzzer $bin (configure with -DDINGO_FUZZ=ON)" >&2
    status=1
    continue
  fi
  if [ -z "$(ls -A "$corpus" 2>/dev/null)" ]; then
    echo "run.sh: the seed corpus $corpus is missing or empty" >&2
    status=1
    continue
  fi
  findings="$build/fuzz/findings/$t"
  mkdir -p "$findings"
  # shellcheck disable=SC2046
  case $mode in
    ctest)
      scratch="$build/fuzz/ctest/$t"
      rm -rf "$scratch" && mkdir -p "$scratch"
      "$bin" $(options "$t") -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$findings/" "$scratch" "$corpus" || status=1
      ;;
    merge)
      "$bin" $(options "$t") -merge=1 "$corpus" "$build/fuzz/corpus/$t" || status=1
      ;;
    fuzz)
      scratch="$build/fuzz/corpus/$t"
      mkdir -p "$scratch"
      echo "== fuzz_$t: ${seconds}s"
      "$bin" $(options "$t") -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$findings/" "$scratch" "$corpus" || status=1
      echo "== fuzz_$t: corpus $(ls "$scratch" | wc -l) new inputs; findings: $(ls "$findings" | wc -l) file(s) in $findings"
      ;;
  esac
done
exit $status
