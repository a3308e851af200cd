#!/usr/bin/env bash
# AddressSanitizer and ThreadSanitizer over the core (`make sanitize`).
#   bash tools/sanitize.sh BUILD [address|thread]...     (no argument: both)
# For each sanitizer, in its own scratch path (BUILD/sanitize-NAME: the normal build is untouched):
#   1. swift test --sanitize=NAME (Tests/LJAsyncTests);
#   2. the busted specs of the concurrent modules (SPECS below) under the installed `luajit`,
#      loading the core that build made, with the sanitizer's runtime preloaded (LuaJIT itself
#      is not instrumented: what is checked is the core's Swift and C code).
# Package.swift drops `-z defs` when LJASYNC_SANITIZE=1 (the runtimes' symbols are the
# executable's to define). Suppressions: tools/sanitize/*.supp. Logs: BUILD/sanitize-NAME/*.log.
# Fails on any sanitizer report or test failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: sanitize.sh BUILD [address|thread]...}" && pwd)
shift
[ $# -gt 0 ] || set -- address thread
export PATH="/opt/swift/usr/bin:$PATH"
SPECS=${SPECS:-"thread_spec sync_spec pool_spec callback_spec light_state_spec init_ownership_spec stack_trim_spec light_spawn_spec light_worker_spec"}
supp=$root/tools/sanitize
swiftlib=$(dirname "$(command -v swift)")/../lib/swift
rtdir=$swiftlib/clang/lib/linux
# Tests that measure the process itself, which a sanitizer's runtime changes: its background
# thread is one more task in /proc/self/task, its shadow memory is RSS. (Lua patterns.)
filter_out=("idle pthreads exit within seconds" "leak no OS threads, thread objects, states or memory")
filters=()
for f in "${filter_out[@]}"; do filters+=(--filter-out="$f"); done

# Reports, by kind, in the report files of log_path prefix $1. A "Swift access race" is TSan's
# check of Swift's exclusivity rule (SE-0176: `p.pointee.x` is an access to all of `p.pointee`);
# counted apart in the summary, and fatal like every other report.
count_reports() {
  local files=("$1".*)
  [ -e "${files[0]}" ] || { echo "0 0"; return; }
  local all access
  # ASan and LSan start their lines with ==PID==, TSan does not.
  all=$(cat "${files[@]}" | grep -c "^\(==[0-9]*==\)\?\(WARNING\|ERROR\): .*Sanitizer" || true)
  access=$(cat "${files[@]}" | grep -c "^WARNING: ThreadSanitizer: Swift access race" || true)
  echo "$((all - access)) $access"
}
show_reports() {
  local files=("$1".*)
  [ -e "${files[0]}" ] || return 0
  # awk caps the output itself: a `head` ends the pipeline with SIGPIPE (exit 141 under pipefail).
  cat "${files[@]}" | awk '
    /^(==[0-9]+==)?(WARNING|ERROR): .*Sanitizer/ { n = 0 }
    n++ < 40 && shown++ < 200'
}

status=0 summary=()
for san in "$@"; do
  case $san in
    address) rt=(libclang_rt.asan-x86_64.so); word=AddressSanitizer ;;
    # Swift's TSan runtime calls into libdispatch (its data destructors).
    thread) rt=(libclang_rt.tsan-x86_64.so "$swiftlib/linux/libdispatch.so"); word=ThreadSanitizer ;;
    *) echo "sanitize: unknown sanitizer '$san' (address, thread)" >&2; exit 2 ;;
  esac
  scratch=$build/sanitize-$san
  mkdir -p "$scratch"
  # Every report, counted from the report files: the sanitizers' own exit codes are off, so a
  # check's exit status is the program's (ASan still aborts at its first memory error).
  export TSAN_OPTIONS="suppressions=$supp/tsan.supp halt_on_error=0 exitcode=0 report_signal_unsafe=0"
  export ASAN_OPTIONS="detect_leaks=1 detect_stack_use_after_return=0"
  export LSAN_OPTIONS="suppressions=$supp/lsan.supp print_suppressions=0 exitcode=0"
  # Each check's reports go to their own files (log_path), not into outputs a test compares.
  run_check() {  # NAME LOG command...
    local name=$1 log=$2 t0=$SECONDS rc=0; shift 2
    rm -f "$scratch/$name.report".*
    (cd "$root" && TSAN_OPTIONS="$TSAN_OPTIONS log_path=$scratch/$name.report" \
      ASAN_OPTIONS="$ASAN_OPTIONS log_path=$scratch/$name.report" "$@") >"$log" 2>&1 || rc=$?
    local counts reports access
    counts=$(count_reports "$scratch/$name.report"); reports=${counts% *}; access=${counts#* }
    local tests
    if [ "$name" = swift-test ]; then tests=$(grep -o 'Test run with [0-9]* tests.*' "$log" | tail -1 || true)
    else tests="$(grep -c '^ok' "$log" || true) ok, $(grep -c '^not ok' "$log" || true) not ok"; fi
    local line="$san: $name: exit $rc, $reports reports, $access Swift access races; $tests; $((SECONDS - t0)) s"
    echo "   $line"
    summary+=("$line")
    reports=$((reports + access))
    if [ "$reports" != 0 ] || [ "$rc" != 0 ]; then
      status=1
      show_reports "$scratch/$name.report"
      grep -A12 "^not ok" "$log" | head -60 || true
      [ "$name" != swift-test ] || [ "$rc" = 0 ] || tail -40 "$log"
    fi
  }
  echo "== sanitize $san"
  run_check swift-test "$scratch/swift-test.log" \
    env LJASYNC_SANITIZE=1 swift test --sanitize="$san" --scratch-path "$scratch"

  core=$scratch/debug/libljasync_core.so
  [ -f "$core" ] || { echo "sanitize: $core was not built" >&2; exit 1; }
  preload=""
  for r in "${rt[@]}"; do case $r in /*) preload+="$r " ;; *) preload+="$rtdir/$r " ;; esac; done
  for spec in $SPECS; do
    run_check "$spec" "$scratch/$spec.log" env LUA_PATH="$root/lua/?.lua;$root/?.lua;;" LJASYNC_CORE="$core" \
      LJASYNC_TESTC="$build/libljasync_testc.so" timeout 900 env LD_PRELOAD="$preload" \
      luajit "$(command -v busted)" -o TAP --exclude-tags=stress "${filters[@]}" "spec/$spec.lua"
  done
done
echo "== sanitize summary (logs in $build/sanitize-*)"
printf '  %s\n' "${summary[@]}"
exit $status
