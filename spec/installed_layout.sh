#!/usr/bin/env bash
# Installs into a scratch prefix and loads lj-async from there, with the build tree out of reach.
set -euo pipefail
build=$1; luajit=${2:-luajit}
src=$(cd "$(dirname "$0")/.." && pwd)
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
so="$prefix/lib/lua/5.1/ljasync_core.so"
if ldd "$so" | grep -qi swift; then echo "FAIL: $so needs the Swift runtime"; ldd "$so"; exit 1; fi
# Everything it needs must resolve with the toolchain out of reach (no rpath into /opt/swift).
if ldd "$so" | grep -q "not found"; then echo "FAIL: unresolved libraries"; ldd "$so"; exit 1; fi
cd /
env -u LJASYNC_CORE -u LJASYNC_TESTC \
  LUA_PATH="$prefix/share/lua/5.1/?.lua;;" LUA_CPATH="$prefix/lib/lua/5.1/?.so;;" \
  "$luajit" -e '
    local core = require "lj-async.core"
    assert(core.path:find(os.getenv("LUA_CPATH"):match("^(.-)%?"), 1, true), "core loaded from " .. core.path)
    local CF = require "lj-async.callback"
    local cb = CF("int(*)(int)")(function(x) return x * 3 end)
    assert(cb:funcptr()(14) == 42)
    cb:free()
    print("installed layout: ok (" .. core.path .. ")")'
# examples/ run against the installed prefix alone: libc is their only C code.
for example in "$src"/examples/*.lua; do
  out=$(mktemp)
  if ! env -u LJASYNC_CORE -u LJASYNC_TESTC \
      LUA_PATH="$prefix/share/lua/5.1/?.lua;;" LUA_CPATH="$prefix/lib/lua/5.1/?.so;;" \
      timeout -k 5 120 "$luajit" "$example" >"$out" 2>&1; then
    echo "FAIL: $example from the installed prefix:"; cat "$out"; rm -f "$out"; exit 1
  fi
  rm -f "$out"
  echo "installed layout: ${example#"$src"/} ok"
done
