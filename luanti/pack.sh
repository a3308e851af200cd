#!/usr/bin/env bash
# Copies lj-async's modules and the built core into a Luanti mod folder: pack.sh CORE.so [MOD_DIR].
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
core=${1:?usage: pack.sh path/to/ljasync_core.so [mod folder]}
dest=${2:-$here/lj_async}
[ -f "$core" ] || { echo "pack.sh: no core at $core (run make first)" >&2; exit 1; }
[ -f "$dest/init.lua" ] || { echo "pack.sh: $dest is not the lj_async mod folder" >&2; exit 1; }
dest=$(cd "$dest" && pwd)
rm -rf "$dest/lj-async"
mkdir -p "$dest/lj-async"
(cd "$here/../lua/lj-async" && find . -name '*.lua' -print0 | while IFS= read -r -d '' f; do
  mkdir -p "$dest/lj-async/$(dirname "$f")"; cp "$f" "$dest/lj-async/$f"; done)
install -m 0755 "$core" "$dest/ljasync_core.so"
echo "lj_async mod ready in $dest"
