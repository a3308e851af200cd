#!/usr/bin/env bash
# The busted suite under every LuaJIT lj-async is tested with (`make test-matrix`).
#   bash .ci/matrix.sh BUILD [LEG...]        (no LEG: all of them, in this order)
# Legs:
#   installed        the `luajit` on PATH: Debian's, or OpenResty's where luajit2 is installed
#   openresty        OpenResty's LuaJIT (Debian luajit2) \  whichever is not installed; their .debs
#   debian           Debian's LuaJIT (luajit)            /  are unpacked into BUILD/luajit/, since
#                    the two packages conflict (apt removes one, and nginx's Lua module, for the other)
#   upstream         LuaJIT 2.1 from source (inside lupa's sdist on PyPI), GC64 as x86-64 builds it
#   upstream-nogc64  the same built with -DLUAJIT_DISABLE_GC64 (32-bit GC references)
#   libffi           the callback specs again, through libffi closures (LJASYNC_ENTRY=libffi)
# Every leg loads the same ljasync_core.so (built once by `make build`: it needs LuaJIT's headers
# only). Downloads and builds are kept in BUILD/luajit/ and reused.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: matrix.sh BUILD [LEG...]}" && pwd)
shift
cache=$build/luajit
multiarch=$(gcc -dumpmachine)
busted=$(command -v busted) || { echo "matrix: busted not found (apt-get install lua-busted)" >&2; exit 1; }
mkdir -p "$cache"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# The installed `luajit` binary: OpenResty's where luajit2 is installed, else Debian's.
installed_family() { if installed luajit2; then echo openresty; else echo debian; fi; }

# Unpacks Debian packages into $cache/NAME/root (once); never installs them.
unpack_debs() {
  local name=$1; shift
  local dir=$cache/$name
  [ -f "$dir/.unpacked" ] && return
  rm -rf "$dir"; mkdir -p "$dir/debs"
  # Sandbox user root: _apt cannot write into a build folder that is not world-writable.
  if ! (cd "$dir/debs" && apt-get -qq -o APT::Sandbox::User=root download "$@"); then
    as_root apt-get update -qq
    (cd "$dir/debs" && apt-get -qq -o APT::Sandbox::User=root download "$@")
  fi
  for deb in "$dir"/debs/*.deb; do dpkg -x "$deb" "$dir/root"; done
  touch "$dir/.unpacked"
}

# LuaJIT 2.1's source, once (.ci/luajit_source.sh).
upstream_source() { bash "$root/.ci/luajit_source.sh" "$cache"; }

# Builds upstream LuaJIT into $cache/NAME with extra XCFLAGS (once).
build_upstream() {
  local name=$1 xcflags=$2 dir=$cache/$1
  [ -f "$dir/.built" ] && return
  upstream_source
  rm -rf "$dir"; cp -r "$cache/upstream-src" "$dir"; rm -f "$dir/.complete"
  echo "matrix: building $name (make XCFLAGS='$xcflags')"
  if ! make -C "$dir" -j"$(nproc)" XCFLAGS="$xcflags" >"$dir.log" 2>&1; then
    tail -30 "$dir.log" >&2; echo "matrix: building $name failed (log: $dir.log)" >&2; exit 1
  fi
  # `make install` would name the library so; hosts that load LuaJIT look for this name.
  ln -sf libluajit.so "$dir/src/libluajit-5.1.so.2"
  touch "$dir/.built"
}

# Sets leg_luajit, leg_path (Lua's path, or empty for the binary's own) and leg_libs (where its
# libluajit-5.1.so.2 is, for whatever loads the library; both Debian binaries are static) for LEG.
setup_leg() {
  leg_luajit=luajit leg_path="" leg_libs=""
  # Debian's Lua modules (busted and its dependencies); busted adds ./lua/?.lua itself.
  local debian_lua="/usr/share/lua/5.1/?.lua;/usr/share/lua/5.1/?/init.lua"
  local pkgs pkgroot
  case $1 in
    installed|libffi) leg_luajit=$(command -v luajit) ;;
    openresty|debian)
      if [ "$1" = openresty ]; then pkgs="luajit2 libluajit2-5.1-2 libluajit2-5.1-common"
      else pkgs="luajit libluajit-5.1-2 libluajit-5.1-common"; fi
      unpack_debs "$1" $pkgs
      pkgroot=$cache/$1/root
      leg_luajit=$pkgroot/usr/bin/luajit
      # Both put jit.* in /usr/share/luajit-2.1.0-beta3: this one's own copy comes first.
      leg_path="$(echo "$pkgroot"/usr/share/luajit-2.1*)/?.lua;$debian_lua"
      leg_libs=$pkgroot/usr/lib/$multiarch ;;
    upstream|upstream-nogc64)
      if [ "$1" = upstream ]; then build_upstream upstream ""
      else build_upstream upstream-nogc64 -DLUAJIT_DISABLE_GC64; fi
      leg_luajit=$cache/$1/src/luajit
      # Its own jit.* (Debian's jit/vmdef.lua describes another bytecode).
      leg_path="$cache/$1/src/?.lua;$debian_lua"
      leg_libs=$cache/$1/src ;;
    *) echo "matrix: unknown leg '$1' (installed openresty debian upstream upstream-nogc64 libffi)" >&2; exit 2 ;;
  esac
}

# Runs the spec files under LEG's LuaJIT (setup_leg first), each in its own busted process as
# ctest does.
run_leg() {
  local leg=$1 start=$2 setup=$(($SECONDS - $2)) failed=() spec specs
  if [ "$leg" = libffi ]; then specs=("$root"/spec/callback*_spec.lua); else specs=("$root"/spec/*_spec.lua); fi
  # Specs that start `luajit` themselves get this leg's.
  local bin=$cache/bin-$leg
  mkdir -p "$bin"; ln -sf "$leg_luajit" "$bin/luajit"
  local env=(PATH="$bin:$PATH" LJASYNC_CORE="$build/ljasync_core.so" LJASYNC_TESTC="$build/libljasync_testc.so")
  [ -n "$leg_path" ] && env+=(LUA_PATH="$leg_path" LUA_CPATH="/usr/lib/$multiarch/lua/5.1/?.so")
  [ -n "$leg_libs" ] && env+=(LD_LIBRARY_PATH="$leg_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
  [ "$leg" = libffi ] && env+=(LJASYNC_ENTRY=libffi)
  local version
  version=$(env "${env[@]}" "$leg_luajit" -e 'io.write(jit.version, pcall(require, "thread.exdata") and " (OpenResty)" or "",
    require("ffi").abi("gc64") and " GC64" or " non-GC64")')
  echo "== matrix leg '$leg': $version ($leg_luajit)"
  # busted's C modules (Debian's, built for Lua 5.1's API) must load into this LuaJIT.
  if ! env "${env[@]}" "$leg_luajit" -e 'require "lfs"; require "system.core"; require "term.core"'; then
    echo "matrix: busted's C modules (lfs, system.core, term.core) do not load under $leg_luajit" >&2
    return 1
  fi
  for spec in "${specs[@]}"; do
    (cd "$root" && env "${env[@]}" timeout 600 "$leg_luajit" "$busted" -o utfTerminal --exclude-tags=stress "$spec") ||
      failed+=("$(basename "$spec")")
  done
  local took="$((SECONDS - start)) s, setup $setup s"
  echo "== matrix leg '$leg': ${#specs[@]} spec files, ${#failed[@]} failed ${failed[*]:-} ($took)"
  summary+=("$leg: ${#failed[@]}/${#specs[@]} spec files failed${failed[*]:+ (${failed[*]})}, $took")
  [ ${#failed[@]} -eq 0 ]
}

if [ $# -eq 0 ]; then
  other=openresty; [ "$(installed_family)" = openresty ] && other=debian
  set -- installed "$other" upstream upstream-nogc64 libffi
fi
summary=() status=0
for leg in "$@"; do
  start=$SECONDS
  setup_leg "$leg"   # a download or build that fails stops the matrix here
  run_leg "$leg" "$start" || status=1
done
echo "== matrix summary"
printf '  %s\n' "${summary[@]}"
exit $status
