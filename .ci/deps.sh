#!/usr/bin/env bash
# Installs what building and testing lj-async needs on Debian 12, only what is missing.
set -euo pipefail
pkgs=(luajit libluajit-5.1-dev libffi-dev cmake make gcc pkg-config lua-busted lua-luv luarocks valgrind
      liblua5.1-0)  # PUC Lua: the host test that lj-async refuses a Lua that is not LuaJIT
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "lj-async: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v swift >/dev/null 2>&1 && [ ! -x /opt/swift/usr/bin/swift ]; then
  echo "lj-async: Swift 6 is required (https://www.swift.org/install/linux/); not found on PATH or in /opt/swift" >&2
  exit 1
fi
