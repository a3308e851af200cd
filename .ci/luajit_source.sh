#!/usr/bin/env bash
# Upstream LuaJIT 2.1's source, from lupa's sdist on PyPI (lupa vendors upstream's v2.1 branch),
# unpacked once into CACHE/upstream-src. Used by .ci/matrix.sh and tools/valgrind.sh.
#   bash .ci/luajit_source.sh CACHE
set -euo pipefail
cache=${1:?usage: luajit_source.sh CACHE}
src=$cache/upstream-src
[ -f "$src/.complete" ] && exit 0
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "luajit_source: installing python3-pip (to download LuaJIT's source)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-pip >/dev/null
fi
mkdir -p "$cache/dl"
[ -f "$cache/dl/lupa-2.8.tar.gz" ] ||
  python3 -m pip download -q --no-deps --no-binary lupa lupa==2.8 -d "$cache/dl"
rm -rf "$src" "$cache/dl/lupa-2.8"
tar -xzf "$cache/dl/lupa-2.8.tar.gz" -C "$cache/dl" lupa-2.8/third-party/luajit21
mv "$cache/dl/lupa-2.8/third-party/luajit21" "$src"
rm -rf "$cache/dl/lupa-2.8"
# A git submodule in the sdist: no history, so give the build the release number the sdist's
# luajit.h carries (else it calls itself 2.1.ROLLING).
rm -rf "$src/.git"
sed -n 's/.*luaJIT_version_2_1_\([0-9][0-9]*\).*/\1/p' "$src/src/luajit.h" >"$src/.relver"
touch "$src/.complete"
