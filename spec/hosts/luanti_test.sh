#!/usr/bin/env bash
# Runs Luanti's minetestserver headless on 127.0.0.1 with the lj_async mod (trusted) and an
# untrusted test mod (spec/hosts/luanti_mod/lj_async_test) in a fresh world; checks its log.
# Usage: luanti_test.sh [path/to/ljasync_core.so]. Installs minetest-server/-data if missing (root).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
core=${1:-$src/build/ljasync_core.so}
. "$src/spec/hosts/lib.sh"

server=/usr/lib/minetest/minetestserver   # the binary; /usr/games/minetestserver adds its own --config
if [ ! -x "$server" ] || [ ! -d /usr/share/games/minetest/games/minetest_game ]; then
  install_packages minetest-server minetest-data
fi
[ -x "$server" ] || server=$(command -v minetestserver)

tmp=$(mktemp -d)
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf "$tmp"' EXIT
world=$tmp/world
mods=$world/worldmods
mkdir -p "$mods/lj_async"
# The mod as a server owner gets it: its own files, then `make luanti-mod`'s copy step.
cp "$src/luanti/lj_async/mod.conf" "$src/luanti/lj_async/init.lua" "$src/luanti/lj_async/README.md" "$mods/lj_async/"
bash "$src/luanti/pack.sh" "$core" "$mods/lj_async" >/dev/null
cp -r "$src/spec/hosts/luanti_mod/lj_async_test" "$src/spec/hosts/luanti_mod/lj_async_trusted_test" "$mods/"

port=$(free_port udp)   # Luanti serves over UDP
cat > "$world/world.mt" <<EOF
gameid = minetest
backend = sqlite3
player_backend = sqlite3
auth_backend = sqlite3
mod_storage_backend = sqlite3
load_mod_lj_async = true
load_mod_lj_async_test = true
load_mod_lj_async_trusted_test = true
EOF
cat > "$tmp/minetest.conf" <<EOF
bind_address = 127.0.0.1
port = $port
ipv6_server = false
server_announce = false
secure.enable_security = true
secure.trusted_mods = lj_async,lj_async_trusted_test
debug_log_level = action
EOF

# Bounded: timeout stops the server (its own child, by pid) if it does not shut itself down.
set +e
HOME=$tmp timeout -k 5 120 "$server" --world "$world" --gameid minetest --config "$tmp/minetest.conf" \
  --logfile "$tmp/debug.txt" >"$tmp/out.txt" 2>&1
rc=$?
set -e
log=$tmp/debug.txt

fail() {
  echo "FAIL: $1"
  echo "--- server output (last 40 lines) ---"; tail -n 40 "$tmp/out.txt"
  echo "--- test lines in the log ---"; grep "lj_async" "$log" || true
  exit 1
}

[ -f "$log" ] || fail "no log written (server exit status $rc)"
[ "$rc" -eq 0 ] || fail "the server exited with status $rc (124: it did not shut down within 120 s)"
grep -q "listening on 127.0.0.1:$port" "$log" || fail "the server did not listen on 127.0.0.1:$port"
for name in success failure dofile cycle io.open ffi os.execute getfenv bytecode upvalue ipc metatable \
            "unrestricted refused" "dofile outside the mod refused" "runtime call" \
            "trusted mod: unrestricted job" "trusted mod: restricted by default" "no insecure environment reachable" \
            "bound runtime call" "bind refused at run time"; do
  grep -qF "lj_async_test: ok $name" "$log" || fail "check '$name' did not pass"
done
if grep -q "lj_async_test: FAIL" "$log"; then fail "a check failed"; fi
grep -q "lj_async_test: done: 20 passed, 0 failed" "$log" || fail "no summary with 20 checks passed"
reported="ERROR\[Server\]: \[lj_async\] job 'lj_async_test' failed: .*init.lua:[0-9]+: nobody takes this failure"
grep -qE "$reported" "$log" || fail "a failure no callback takes was not written to the log"
if grep -E "ERROR\[|\[lj_async\]" "$log" | grep -vE "$reported|^[^ ]+ [^ ]+ ERROR\[Server\]: stack traceback:|ERROR\[Server\]: *	"; then
  fail "unexpected errors in the log"
fi
echo "luanti: ok ($(grep -c 'lj_async_test: ok' "$log") checks passed in minetestserver on 127.0.0.1:$port)"
