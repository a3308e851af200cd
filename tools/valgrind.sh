#!/usr/bin/env bash
# valgrind memcheck over real Lua use of the core (`make valgrind`): two C hosts of spec/hosts
# and the busted specs that exercise native lifetimes, under an upstream LuaJIT 2.1 built for
# valgrind (LUAJIT_USE_VALGRIND + LUAJIT_USE_SYSMALLOC: every Lua object is a malloc block
# valgrind tracks, and no false reports from LuaJIT's own allocator or string hashing).
#   bash tools/valgrind.sh BUILD [SPEC...]     (no SPEC: the default selection below)
# Counted as errors: invalid reads/writes/frees, uses of uninitialised values and definitely
# lost blocks. "Possibly lost" and "still reachable" are not: states of threads that still run
# (parked pthreads, the state preparer) when the process exits are expected there.
# Logs: BUILD/valgrind/*.log.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: valgrind.sh BUILD [SPEC...]}" && pwd)
shift
specs=("$@")
[ ${#specs[@]} -gt 0 ] || specs=(callback_spec thread_spec sync_spec pool_spec light_state_spec init_ownership_spec)
out=$build/valgrind
cache=$build/luajit
multiarch=$(gcc -dumpmachine)
command -v valgrind >/dev/null || { echo "valgrind: not installed (apt-get install valgrind)" >&2; exit 1; }
mkdir -p "$out" "$cache"

# LuaJIT 2.1's source, as .ci/matrix.sh fetches it (one copy in the cache).
bash "$root/.ci/luajit_source.sh" "$cache"
src=$cache/upstream-src
lj=$cache/upstream-valgrind
if [ ! -f "$lj/.built" ]; then
  rm -rf "$lj"; cp -r "$src" "$lj"; rm -f "$lj/.complete"
  echo "valgrind: building LuaJIT for valgrind into $lj"
  # -g and no strip: LuaJIT's frames named in the reports.
  if ! make -C "$lj" -j"$(nproc)" XCFLAGS="-DLUAJIT_USE_VALGRIND -DLUAJIT_USE_SYSMALLOC" CCDEBUG=-g \
      TARGET_STRIP=: >"$lj.log" 2>&1; then
    tail -30 "$lj.log" >&2; echo "valgrind: building LuaJIT failed (log: $lj.log)" >&2; exit 1
  fi
  ln -sf libluajit.so "$lj/src/libluajit-5.1.so.2"
  touch "$lj/.built"
fi

# valgrind 3.19 (Debian 12) gives up on the DWARF 5 Swift writes ("unhandled dwarf2 abbrev
# form"): a copy without debug sections keeps the symbol table, so frames still have names.
objcopy --strip-debug "$build/ljasync_core.so" "$out/ljasync_core.so"

vg=(valgrind --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite
    --error-exitcode=99 --num-callers=40 --suppressions="$root/tools/sanitize/valgrind.supp")
env=(LJASYNC_CORE="$out/ljasync_core.so" LJASYNC_TESTC="$build/libljasync_testc.so"
     LD_LIBRARY_PATH="$lj/src")
failed=() start=$SECONDS
# NAME, then the command (its own environment in `extra`). Exit 99 is valgrind's verdict; any
# other failure is the program's.
check() {
  local name=$1 t0=$SECONDS rc=0; shift
  (cd "$root" && timeout 1200 env "${env[@]}" "${extra[@]}" "${vg[@]}" --log-file="$out/$name.log" "$@") \
    >"$out/$name.out" 2>&1 || rc=$?
  local summary
  summary=$(sed -n 's/^==[0-9]*== ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$out/$name.log" | head -1)
  echo "valgrind: $name: exit $rc, ${summary:-?} valgrind errors, definitely lost:" \
    "$(sed -n 's/^==[0-9]*==  *definitely lost: //p' "$out/$name.log" | head -1) ($((SECONDS - t0)) s)"
  if [ "$rc" != 0 ]; then
    failed+=("$name")
    [ "$rc" = 99 ] && grep -v 'unhandled dwarf' "$out/$name.log" | sed -n '/^==[0-9]*== .*\(Invalid\|uninitialised\|definitely lost in\|Mismatched\|Syscall param\|overlap\)/,/^==[0-9]*== $/p' | head -80
    [ "$rc" = 99 ] || tail -20 "$out/$name.out"
  fi
}

# The hosts: LuaJIT linked (its API global in the process) and dlopened privately.
extra=(LUA_PATH="$root/lua/?.lua;;")
check host_linked "$build/host_linked" spec/hosts/host_script.lua
check host_plugin "$build/host_plugin" spec/hosts/host_script.lua \
  "$lj/src/libluajit-5.1.so.2"

# busted under this LuaJIT (as .ci/matrix.sh's upstream leg runs it), its own jit.* first;
# specs that start `luajit` themselves get this one (not under valgrind: children are not traced).
bin=$out/bin; mkdir -p "$bin"; ln -sf "$lj/src/luajit" "$bin/luajit"
# Left out: tests that measure the process (valgrind's own memory is RSS), and one that needs two
# threads in a callback at the same instant within a deadline (valgrind runs one thread at a
# time: it failed there twice in about ten runs, with no valgrind error).
filters=()
for f in "leak no OS threads, thread objects, states or memory" "idle pthreads exit within seconds" \
         "runs parallel callbacks in several states at once"; do
  filters+=(--filter-out="$f")
done
extra=(PATH="$bin:$PATH" LUA_CPATH="/usr/lib/$multiarch/lua/5.1/?.so"
       LUA_PATH="$root/lua/?.lua;$lj/src/?.lua;/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua")
for spec in "${specs[@]}"; do
  check "$spec" "$lj/src/luajit" "$(command -v busted)" -o TAP --exclude-tags=stress "${filters[@]}" "spec/$spec.lua"
done
echo "valgrind: ${#failed[@]} of $((2 + ${#specs[@]})) checks failed${failed[*]:+ (${failed[*]})}, $((SECONDS - start)) s; logs in $out"
[ ${#failed[@]} -eq 0 ]
