#!/usr/bin/env bash
# Runs nginx with lua-nginx-module (OpenResty's LuaJIT) on 127.0.0.1 with lj-async loaded in
# init_by_lua, 2 worker processes, a pool job, a thread and a callback handed to libc's qsort;
# 20 requests each, then the same after a reload (HUP: a new Lua VM in the master, new workers),
# which must not see what the first configuration registered. Checks every body and the logs.
# Usage: openresty_test.sh [path/to/ljasync_core.so]  (the build dir beside it caches the .debs)
# Installs nginx-core, libnginx-mod-http-ndk and curl when missing (root); unpacks Debian's
# libnginx-mod-http-lua, lua-resty-core, lua-resty-lrucache and libluajit2-5.1-2 into
# BUILD/openresty/ (they conflict with Debian's luajit, which the build needs: never installed).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
core=$(realpath "${1:-$src/build/ljasync_core.so}")
build=$(dirname "$core")
cache=$build/openresty
[ -f "$core" ] || { echo "FAIL: no core at $core (run make build)"; exit 1; }

. "$src/spec/hosts/lib.sh"

# -- What nginx needs --
missing=()
# libpcre3: a dependency of the unpacked Lua module (installable: it conflicts with nothing).
for p in nginx-core libnginx-mod-http-ndk libpcre3 curl; do installed "$p" || missing+=("$p"); done
install_packages "${missing[@]}"
if [ ! -f "$cache/.unpacked" ]; then
  echo "unpacking libnginx-mod-http-lua, lua-resty-core, lua-resty-lrucache, libluajit2-5.1-2 into $cache"
  rm -rf "$cache"; mkdir -p "$cache/debs"
  pkgs=(libnginx-mod-http-lua lua-resty-core lua-resty-lrucache libluajit2-5.1-2)
  # Sandbox user root: _apt cannot write into a build folder that is not world-writable.
  if ! (cd "$cache/debs" && apt-get -qq -o APT::Sandbox::User=root download "${pkgs[@]}"); then
    as_root apt-get update -qq
    (cd "$cache/debs" && apt-get -qq -o APT::Sandbox::User=root download "${pkgs[@]}")
  fi
  for deb in "$cache"/debs/*.deb; do dpkg -x "$deb" "$cache/root"; done
  touch "$cache/.unpacked"
fi
root=$cache/root
nginx=/usr/sbin/nginx
lua_module=$root/usr/lib/nginx/modules/ngx_http_lua_module.so
ndk_module=/usr/lib/nginx/modules/ndk_http_module.so
libluajit=$(find "$root/usr/lib" -name 'libluajit-5.1.so.2' | head -n 1)
# OpenResty's libluajit-5.1.so.2 first, for the Lua module (Debian's of the same name stays installed).
ldpath="$(dirname "$libluajit")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for f in "$nginx" "$lua_module" "$ndk_module" "$libluajit"; do
  [ -e "$f" ] || { echo "FAIL: $f is missing"; exit 1; }
done

# -- A user's layout: lj-async's modules and the core in a folder of their own (so nothing is
# found through this source tree) --
tmp=$(mktemp -d)
master=
cleanup() {
  set +e  # every step runs, whatever the one before said
  # On a failure: TERM to the master (nginx's fast shutdown stops the workers too), bounded;
  # then KILL to the master and its workers, by pid (a killed master leaves its workers behind).
  if [ -n "$master" ] && kill -0 "$master" 2>/dev/null; then
    local left i
    left=$(children)
    kill -TERM "$master" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$master" 2>/dev/null || break; sleep 0.1; done
    left="$left $(children)"
    kill -KILL "$master" 2>/dev/null || true
    for i in $left; do  # still an nginx worker (not a reused pid)?
      tr '\0' ' ' 2>/dev/null < "/proc/$i/cmdline" | grep -q '^nginx: worker' && kill -KILL "$i" 2>/dev/null || true
    done
  fi
  if [ -n "${KEEP_TMP:-}" ]; then echo "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
chmod 755 "$tmp"   # workers run as nobody when the master is root
mkdir -p "$tmp/lua" "$tmp/lib" "$tmp/out"
cp -r "$src/lua/lj-async" "$tmp/lua/"
cp "$core" "$tmp/lib/ljasync_core.so"
echo 'GEN1_FILE = true' > "$tmp/gen1_file.lua"
unset LJASYNC_CORE

port=$(free_port tcp)

write_conf() {  # generation
  sed -e "s|@NDK_MODULE@|$ndk_module|; s|@LUA_MODULE@|$lua_module|; s|@TMP@|$tmp|g" \
      -e "s|@RESTY@|$root/usr/share/lua/5.1|; s|@LUA@|$tmp/lua|; s|@APP@|$src/spec/hosts/openresty|" \
      -e "s|@LIB@|$tmp/lib|; s|@PORT@|$port|; s|@GEN@|$1|" \
      "$src/spec/hosts/openresty/nginx.conf.in" > "$tmp/nginx.conf"
}

fail() {
  exec >&2
  echo "FAIL: $1"
  echo "--- error.log (last 30 lines) ---"; tail -n 30 "$tmp/error.log" 2>/dev/null || true
  echo "--- nginx stderr ---"; tail -n 30 "$tmp/stderr.log" 2>/dev/null || true
  if [ -n "$master" ] && kill -0 "$master" 2>/dev/null; then
    echo "--- nginx processes still running (threads: name state kernel wait) ---"
    local p t
    for p in "$master" $(children); do
      echo "$p: $(tr '\0' ' ' 2>/dev/null < "/proc/$p/cmdline")"
      for t in /proc/"$p"/task/*; do
        echo "  ${t##*/} $(cat "$t/comm" 2>/dev/null) $(awk '/^State:/ {print $2}' "$t/status" 2>/dev/null) $(cat "$t/wchan" 2>/dev/null)"
      done
    done
  fi
  exit 1
}
get() { curl -sS --max-time 10 --noproxy '*' "http://127.0.0.1:$port$1"; }
children() {  # the master's child processes (its workers), sorted
  # (grep says 2 when a process goes between the glob and the read: that is no error here)
  { grep -s '^PPid:' /proc/[0-9]*/status || true; } | awk -v m="$master" '$2 == m { split($1, p, "/"); print p[3] }' | sort -n | paste -sd ' '
}
# 20 requests at once (each its own connection) to PATH; every body must match the regex.
# Prints the worker pids that answered.
batch() {  # name path regex
  local name=$1 path=$2 re=$3 pids=() i
  for i in $(seq 1 20); do get "$path" > "$tmp/out/$name.$i" 2>&1 & pids+=($!); done
  for i in "${pids[@]}"; do wait "$i" || true; done
  for i in $(seq 1 20); do
    grep -Eqx "$re" "$tmp/out/$name.$i" || fail "$path answer $i: '$(cat "$tmp/out/$name.$i")' does not match '$re'"
  done
  sed -n 's/.* pid=\([0-9]*\) .*/\1/p' "$tmp/out/$name".* | sort -un | paste -sd ' '
}

# One generation: 20 requests each for the pool, the thread and the callback, over both workers.
check_generation() {  # gen expected-workers
  local gen=$1 workers=$2 tail="gen=$1 pid=[0-9]+ master=$master" seen
  seen=$( { batch pool$gen "/pool?n=12" "square=144 workers=[1-9][0-9]* $tail"
            batch thread$gen "/thread?n=7" "sum=140 tid=[0-9]+ $tail"
            batch sort$gen "/sort?v=5,-3,9,1,0,7" "sorted=-3,0,1,5,7,9 cb_errors=0 $tail"; } |
          tr ' ' '\n' | sort -un | paste -sd ' ')
  [ "$seen" = "$workers" ] || fail "generation $gen: answered by workers '$seen', expected both of '$workers'"
  # The thread ran on its own OS thread, not on the worker's.
  for f in "$tmp/out/thread$gen".*; do
    read -r _ tid _ pid _ < "$f"
    [ "${tid#tid=}" != "${pid#pid=}" ] || fail "generation $gen: the thread ran on the worker's own thread ($(cat "$f"))"
  done
  # Waiting with lj-async.ngx leaves the event loop running; async.wait() stops it.
  local poll block
  poll=$(get "/ticks?mode=poll"); block=$(get "/ticks?mode=block")
  [[ $poll =~ ^ticks=([0-9]+)\ status=done\ $tail$ ]] || fail "/ticks?mode=poll: '$poll'"
  [ "${BASH_REMATCH[1]}" -ge 5 ] || fail "/ticks?mode=poll: the event loop turned ${BASH_REMATCH[1]} times in 0.3 s ('$poll')"
  [[ $block =~ ^ticks=0\ status=done\ $tail$ ]] || fail "/ticks?mode=block: expected 0 ticks ('$block')"
  echo "generation $gen: 60 requests over workers $seen; ticks while waiting: ${poll%% *} (poll), ${block%% *} (async.wait)"
}

# nginx's processes take their signals (HUP, QUIT, TERM, CHLD, IO, ALRM, ...) on their main
# thread: a signal handled on another thread sets nginx's flag without waking the main thread's
# sigsuspend/epoll_wait (a master that then misses its last SIGCHLD never exits). So every
# thread lj-async adds to the master and the workers must block them.
NGINX_SIGNALS=$(( (1<<0)|(1<<1)|(1<<2)|(1<<9)|(1<<11)|(1<<13)|(1<<14)|(1<<16)|(1<<27)|(1<<28) ))
check_signal_masks() {  # where
  local p t blk
  for p in "$master" $(children); do
    for t in /proc/"$p"/task/*; do
      [ "${t##*/}" != "$p" ] || continue
      blk=$(awk '/^SigBlk:/ {print $2}' "$t/status" 2>/dev/null) || continue
      [ -n "$blk" ] || continue
      [ $(( 0x$blk & NGINX_SIGNALS )) = $NGINX_SIGNALS ] ||
        fail "$1: thread ${t##*/} ($(cat "$t/comm" 2>/dev/null)) of nginx process $p does not block nginx's signals (SigBlk $blk)"
    done
  done
}

# -- Generation 1 --
write_conf 1
LD_LIBRARY_PATH="$ldpath" "$nginx" -t -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/error.log" >"$tmp/t.log" 2>&1 ||
  { cat "$tmp/t.log"; fail "nginx -t refuses the configuration"; }
: > "$tmp/error.log"
# Bounded: timeout ends nginx (its own child) should everything below hang.
LD_LIBRARY_PATH="$ldpath" timeout -k 5 150 "$nginx" -p "$tmp" -c "$tmp/nginx.conf" -e "$tmp/error.log" >"$tmp/stderr.log" 2>&1 &
job=$!
started() {
  [ -s "$tmp/nginx.pid" ] && return 0
  kill -0 "$job" 2>/dev/null || fail "nginx exited at start"
  return 1
}
wait_for 20 "nginx writes its pid file" started
master=$(cat "$tmp/nginx.pid")
two_workers() { [ "$(children | wc -w)" = 2 ]; }
wait_for 20 "the master starts 2 workers" two_workers
workers1=$(children)
serving() { get "/pool?n=1" 2>/dev/null | grep -q "^square=1 "; }
wait_for 20 "nginx answers on 127.0.0.1:$port" serving
check_generation 1 "$workers1"
check_signal_masks "generation 1"
leak1=$(get /leak)
[[ $leak1 =~ ^def=true\ file=true\ init=true\ mt=true\ thread_init=true\ warn_after=7.25\ gen=1 ]] ||
  fail "generation 1 should see its own registrations: '$leak1'"

# -- Reload: a new configuration (generation 2, which registers none of the extras) --
write_conf 2
kill -HUP "$master"
new_workers() {
  local now w
  now=$(children)
  [ "$(echo "$now" | wc -w)" = 2 ] || return 1
  for w in $now; do [[ " $workers1 " != *" $w "* ]] || return 1; done
}
wait_for 30 "2 new workers replace the old ones after the reload" new_workers
workers2=$(children)
[ "$(cat "$tmp/nginx.pid")" = "$master" ] || fail "the master's pid changed on reload"
check_generation 2 "$workers2"
check_signal_masks "generation 2"
leak2=$(get /leak)
# What generation 1 registered is gone: its definition, its async file, its init code (in pool
# workers and threads), its portable metatable and its pool settings.
[[ $leak2 =~ ^def=false\ file=false\ init=false\ mt=false\ thread_init=false\ warn_after=([0-9.]+)\ gen=2 ]] ||
  fail "generation 1's registrations leaked into generation 2: '$leak2' (generation 1 saw '$leak1')"
[ "${BASH_REMATCH[1]}" != 7.25 ] || fail "generation 1's pool settings leaked into generation 2: '$leak2'"
echo "reload: master $master kept, workers $workers1 -> $workers2; generation 1 saw '${leak1% gen=*}', generation 2 '${leak2% gen=*}'"

# -- Stop by the master's pid, bounded --
kill -QUIT "$master"
gone() { ! kill -0 "$master" 2>/dev/null; }
wait_for 20 "nginx stops after QUIT" gone
rc=0; wait "$job" || rc=$?
[ "$rc" = 0 ] || fail "nginx exited with status $rc"
master=

# -- Logs --
if grep -E '\[(error|alert|crit|emerg)\]|exited on signal' "$tmp/error.log"; then
  fail "error.log has errors"
fi
if grep -n . "$tmp/stderr.log"; then fail "nginx's stderr is not empty"; fi
echo "PASS: openresty ($(grep -c 'start worker process [0-9]' "$tmp/error.log") worker starts, error.log clean)"
