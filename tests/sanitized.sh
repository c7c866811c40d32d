#!/usr/bin/env bash
# Runs one test command of the sanitizer tree (build-asan) so that no sanitizer report is
# lost: every process it starts, the supervisor's gateway workers included, writes its
# ASan, LeakSanitizer and UBSan reports to REPORT_DIR (log_path, one file per pid), and
# the command fails when any report is there, whatever its own exit status. A worker
# that leaks on exit, or hits undefined behaviour while the supervisor restarts it and
# the test carries on, still fails the suite.
#   sanitized.sh REPORT_DIR COMMAND [ARG...]
set -u
if [ $# -lt 2 ]; then
  sed -n '2,8p' "$0" >&2
  exit 2
fi
reports=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$reports"
mkdir -p "$reports"

# halt_on_error and abort_on_error: a report ends the process with SIGABRT, which its
# parent (the test, or the supervisor for a worker) sees. Leaks are checked at exit.
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1"
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="log_path=$reports/ubsan:halt_on_error=1:abort_on_error=1:print_stacktrace=1"
export DINGO_SANITIZED=1  # tests/integration/harness.py: release_only tests skip

"$@"
status=$?

# LeakSanitizer's stop-the-world prints "Unable to get registers from thread N" when a
# thread ends while it stops them (an Asio resolver thread at exit, on a loaded machine)
# and checks the others all the same: a warning, not a finding. A file holding nothing
# else is shown but does not fail the test.
benign='^==[0-9]+==Unable to get registers from thread [0-9]+\.$'
found=0
for f in "$reports"/*; do
  [ -e "$f" ] || continue
  if ! grep -Evq "$benign" "$f"; then
    echo "==== sanitizer warning only (not a finding) $f"
    cat "$f"
    continue
  fi
  found=1
  echo "==== sanitizer report $f"
  cat "$f"
done
if [ $found -ne 0 ]; then
  echo "sanitized.sh: sanitizer reports above (kept in $reports); failing the test" >&2
  exit 1
fi
exit $status
