#!/usr/bin/env bash
# .ci/deps.sh never removes a LuaJIT: run in dry-run mode against copies of this machine's dpkg
# status that apt's own simulation turned into other machines (OpenResty's LuaJIT with nginx's
# Lua module; no LuaJIT at all). Needs apt's package lists (apt-get update).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
apt-cache show luajit2 >/dev/null 2>&1 || fail "apt has no package lists (run apt-get update)"

# Makes DIR/status: this machine's status after `apt-get ARGS...` as apt simulates it.
machine() {
  local dir=$1; shift
  mkdir -p "$dir/updates" "$dir/info"
  local plan
  plan=$(LC_ALL=C apt-get -s "$@")
  local gone
  gone=$(echo "$plan" | sed -n 's/^Remv \([^ :]*\).*/\1/p' | tr '\n' ' ')
  # Paragraph mode: drop the stanzas of removed packages.
  awk -v gone=" $gone " 'BEGIN { RS = ""; ORS = "\n\n" }
    { split($0, l, "\n"); sub(/^Package: /, "", l[1]); if (index(gone, " " l[1] " ") == 0) print }' \
    /var/lib/dpkg/status >"$dir/status"
  echo "$plan" | sed -n 's/^Inst \([^ :]*\) (\([^ ]*\) .*/\1 \2/p' | while read -r name version; do
    # A status stanza: the archive's, minus the fields of an archive file.
    apt-cache show "$name=$version" | awk 'NR == 1 { print; print "Status: install ok installed"; next }
      /^$/ { exit } /^(Filename|Size|MD5sum|SHA1|SHA256|SHA512|Description-md5): / { next } { print }' >>"$dir/status"
    echo >>"$dir/status"
  done
}
deps() { LJASYNC_DEPS_DRY_RUN=1 LJASYNC_DPKG_ADMINDIR=$1 bash "$here/deps.sh" 2>&1; }

# OpenResty's LuaJIT binary and library, nginx's Lua module, not the -dev package.
machine "$tmp/openresty" install --no-install-recommends luajit2 libnginx-mod-http-lua
dpkg-query --admindir="$tmp/openresty" -W -f='${Status}' luajit2 | grep -q "ok installed" ||
  fail "the simulated machine has no luajit2"
# The scenario is real: installing Debian's packages there removes OpenResty's and nginx's module.
LC_ALL=C apt-get -s -o Dir::State::status="$tmp/openresty/status" install luajit libluajit-5.1-dev |
  grep -q "^Remv luajit2 " || fail "apt-get install luajit does not remove luajit2 on the simulated machine"
out=$(deps "$tmp/openresty") || fail "deps.sh refused on the OpenResty machine: $out"
echo "$out" | grep -q "^lj-async: would install .*libluajit2-5.1-dev" || fail "deps.sh plans no libluajit2-5.1-dev: $out"
echo "$out" | grep -Eq "^(lj-async: would install(.* )?|Inst )(luajit|libluajit-5\.1-2|libluajit-5\.1-dev)( |$)" &&
  fail "deps.sh installs Debian's LuaJIT over OpenResty's: $out"
echo "$out" | grep -q "^Remv " && fail "deps.sh removes packages: $out"
echo "deps.sh on a machine with OpenResty's LuaJIT: $(echo "$out" | head -1)"

# No LuaJIT: Debian's.
# (Naming libluajit2-5.1-2 keeps apt from installing it for what depended on Debian's.)
machine "$tmp/none" remove luajit libluajit-5.1-2 libluajit-5.1-dev libluajit-5.1-common libluajit2-5.1-2
out=$(deps "$tmp/none") || fail "deps.sh refused on a machine without LuaJIT: $out"
echo "$out" | grep -q "^lj-async: would install luajit libluajit-5.1-dev" || fail "deps.sh plans no Debian LuaJIT: $out"
echo "$out" | grep -q "^Remv " && fail "deps.sh removes packages: $out"
echo "deps.sh on a machine without LuaJIT: $(echo "$out" | head -1)"

# This machine as it is.
out=$(deps /var/lib/dpkg) || fail "deps.sh refused on this machine: $out"
echo "$out" | grep -q "^Remv " && fail "deps.sh removes packages: $out"
echo "deps.sh on this machine: $(echo "$out" | head -1)"
echo "deps: ok"
