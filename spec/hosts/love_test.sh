#!/usr/bin/env bash
# lj-async in a real LÖVE 11 game, laid out as LÖVE users do: lj-async/ in the game folder or in
# the .love zip, the core beside main.lua, beside the .love or in the save directory, `love`
# run from another directory with no LJASYNC_* or LUA_* variables. The headless test game
# (spec/hosts/love_game) goes through seed 001's API and prints one line per check; it runs
# again as a fused executable; then examples/love runs under xvfb-run for 120 frames.
# Usage: love_test.sh path/to/ljasync_core.so
set -euo pipefail
core=${1:?usage: love_test.sh path/to/ljasync_core.so}
core=$(cd "$(dirname "$core")" && pwd)/$(basename "$core")
src=$(cd "$(dirname "$0")/../.." && pwd)
. "$src/spec/hosts/lib.sh"

# -- What the test needs, installed when missing (CI runs as root on a fresh Debian 12) --
missing=()
command -v love >/dev/null || missing+=(love)
command -v xvfb-run >/dev/null || missing+=(xvfb)
command -v xauth >/dev/null || missing+=(xauth)
command -v zip >/dev/null || missing+=(zip)
install_packages "${missing[@]}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/game" "$tmp/dist" "$tmp/elsewhere" "$tmp/home" "$tmp/data"
cp -r "$src/spec/hosts/love_game/." "$tmp/game/"
cp -r "$src/lua/lj-async" "$tmp/game/"
(cd "$tmp/game" && zip -qr ../dist/g.love .)          # the .love: lj-async/ inside, no core
savedir="$tmp/data/love/ljasync_love_test"             # conf.lua's identity under XDG_DATA_HOME

# Runs LÖVE bounded in time, from another directory, with a clean environment (no LJASYNC_*,
# no LUA_*); output in $tmp/out and $tmp/err, exit status in $status.
run_love() {
  local pid
  (cd "$tmp/elsewhere" && exec env -i PATH=/usr/bin:/bin HOME="$tmp/home" XDG_DATA_HOME="$tmp/data" \
     "$@" >"$tmp/out" 2>"$tmp/err") &
  pid=$!
  status=0
  wait "$pid" || status=$?
}

fail() {
  echo "FAIL: $1"; echo "--- stdout"; cat "$tmp/out"; echo "--- stderr"; cat "$tmp/err"; exit 1
}

# $1 label, $2 the game (a folder, a .love, or a fused executable), $3 where the core must
# have been found.
check_game() {
  if [ -x "$2" ] && [ -f "$2" ]; then run_love timeout -k 5 120 "$2"; else run_love timeout -k 5 120 love "$2"; fi
  [ "$status" = 0 ] || fail "$1: love exited with $status"
  grep -q '^FAIL' "$tmp/out" && fail "$1: a check failed"
  grep -qx "core $3" "$tmp/out" || fail "$1: the core was not loaded from $3"
  local done
  done=$(grep '^done: ' "$tmp/out") || fail "$1: the game did not finish"
  [[ $done =~ ^done:\ ([0-9]+)\ ok,\ 0\ failed$ ]] && (( BASH_REMATCH[1] >= 31 )) ||
    fail "$1: expected at least 31 checks and none failed, got '$done'"
  grep -q 'lj-async' "$tmp/err" && fail "$1: lj-async wrote to stderr"
  echo "love $1: $done"
}

# 1. The folder layout: the core beside main.lua (the game's source folder).
cp "$core" "$tmp/game/ljasync_core.so"
check_game "folder, core in the game folder" "$tmp/game" "$tmp/game/ljasync_core.so"
rm "$tmp/game/ljasync_core.so"

# 2. The .love layout, the core beside the .love (getSourceBaseDirectory).
cp "$core" "$tmp/dist/ljasync_core.so"
check_game ".love, core beside it" "$tmp/dist/g.love" "$tmp/dist/ljasync_core.so"
rm "$tmp/dist/ljasync_core.so"

# 3. The .love layout, the core in the save directory.
mkdir -p "$savedir"
cp "$core" "$savedir/ljasync_core.so"
check_game ".love, core in the save directory" "$tmp/dist/g.love" "$savedir/ljasync_core.so"
rm "$savedir/ljasync_core.so"

# 4. A fused game (the .love appended to LÖVE's executable), the core beside the executable.
mkdir -p "$tmp/fused"
cat "$(readlink -f "$(command -v love)")" "$tmp/dist/g.love" >"$tmp/fused/mygame"
chmod +x "$tmp/fused/mygame"
cp "$core" "$tmp/fused/ljasync_core.so"
check_game "fused, core beside the executable" "$tmp/fused/mygame" "$tmp/fused/ljasync_core.so"
rm "$tmp/fused/ljasync_core.so"

# 5. No core anywhere: the error names the places to put it, and the game does not start.
run_love timeout -k 5 60 love "$tmp/dist/g.love"
[ "$status" != 0 ] || fail "no core: love exited with 0"
cat "$tmp/out" "$tmp/err" | grep -q "lj-async: cannot find ljasync_core.so" || fail "no core: no clear error"
echo "love no core: fails with 'cannot find ljasync_core.so'"

# 6. examples/love under a virtual display, for 120 frames.
cp -r "$src/examples/love" "$tmp/example"
cp -r "$src/lua/lj-async" "$tmp/example/"
cp "$core" "$tmp/example/ljasync_core.so"
run_love xvfb-run -a timeout -k 5 120 love "$tmp/example" --frames 120
[ "$status" = 0 ] || fail "examples/love: exited with $status"
line=$(grep '^example: loaded' "$tmp/out") || fail "examples/love: no summary line"
# All chunks built, and the frame loop kept drawing while the workers built them.
[[ $line =~ ^example:\ loaded\ 24/24\ chunks,\ 0\ failed,\ ([0-9]+)\ frames\ drawn\ while\ loading ]] &&
  (( BASH_REMATCH[1] >= 2 )) || fail "examples/love: '$line'"
echo "love $line"
