#!/usr/bin/env bash
# Installs what building and testing lj-async needs on Debian 12, only what is missing, and never
# removes a package to do it.
#   LJASYNC_DEPS_DRY_RUN=1       only simulate (apt-get -s) and print the plan
#   LJASYNC_DPKG_ADMINDIR=DIR    read installed packages from DIR/status (tests: .ci/deps_test.sh)
set -euo pipefail
admindir=${LJASYNC_DPKG_ADMINDIR:-/var/lib/dpkg}
dry=${LJASYNC_DEPS_DRY_RUN:-}
installed() {
  dpkg-query --admindir="$admindir" -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

# LuaJIT: Debian's (luajit, libluajit-5.1-dev) or OpenResty's (luajit2, libluajit2-5.1-dev, which
# nginx's Lua module needs). The two conflict: apt would remove the installed one, and what
# depends on it, to install the other. The core needs only the headers, which both -dev packages
# put in the same place (luajit-2.1/lua.h, pkg-config name luajit), and the tests a `luajit`
# binary: complete the family that is installed, Debian's when there is none.
luajit=(luajit libluajit-5.1-dev)
for p in luajit2 libluajit2-5.1-2 libluajit2-5.1-dev; do
  if installed "$p"; then luajit=(luajit2 libluajit2-5.1-dev); break; fi
done

pkgs=("${luajit[@]}" libffi-dev cmake make gcc pkg-config lua-busted lua-luv luarocks valgrind
      liblua5.1-0)  # PUC Lua: the host test that lj-async refuses a Lua that is not LuaJIT
missing=()
for p in "${pkgs[@]}"; do
  installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  apt_opts=(-o Dir::State::status="$admindir/status")
  [ -n "$dry" ] || $SUDO apt-get update -qq
  # Simulate first: refuse a plan that removes anything (a LuaJIT, nginx's Lua module, ...);
  # --no-remove below guards the real run too.
  plan=$(LC_ALL=C apt-get "${apt_opts[@]}" -s install -y "${missing[@]}" 2>&1) || {
    echo "$plan" >&2
    echo "lj-async: apt-get cannot install ${missing[*]}" >&2
    exit 1
  }
  removed=$(echo "$plan" | sed -n 's/^Remv \([^ ]*\).*/\1/p' | paste -sd ' ')
  if [ -n "$removed" ]; then
    echo "lj-async: installing ${missing[*]} would remove $removed; refusing" >&2
    exit 1
  fi
  if [ -n "$dry" ]; then
    echo "lj-async: would install ${missing[*]}"
    echo "$plan" | grep -E '^(Inst|Remv) ' || true
    exit 0
  fi
  echo "lj-async: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-remove "${missing[@]}" >/dev/null
elif [ -n "$dry" ]; then
  echo "lj-async: would install nothing"
fi
if ! command -v swift >/dev/null 2>&1 && [ ! -x /opt/swift/usr/bin/swift ]; then
  echo "lj-async: Swift 6 is required (https://www.swift.org/install/linux/); not found on PATH or in /opt/swift" >&2
  exit 1
fi
