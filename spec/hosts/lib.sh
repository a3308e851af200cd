# Shared by the real-host tests (luanti_test.sh, love_test.sh, openresty_test.sh): sourced, not run.
# Each function is bounded and touches only what the caller names (no process lookup by name).

# Runs a command as root: directly when root, else through sudo when there is one.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else echo "FAIL: '$*' needs root (run as root, or install what it installs)"; exit 1; fi
}

# True when Debian package $1 is installed.
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# Installs Debian packages (CI runs as root on a fresh Debian 12). A package's service must not
# start on the machine (nginx would take port 80): invoke-rc.d asks policy-rc.d, so one that
# refuses is in place during the install only, unless the machine already has a policy.
install_packages() {  # package...
  [ $# -gt 0 ] || return 0
  echo "installing $*"
  as_root apt-get update -qq >/dev/null
  local policy=/usr/sbin/policy-rc.d added_policy= status=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
    as_root chmod +x "$policy"
    added_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-remove "$@" >/dev/null || status=$?
  [ -z "$added_policy" ] || as_root rm -f "$policy"
  [ "$status" = 0 ] || { echo "FAIL: apt-get install $* failed"; exit 1; }
}

# Prints a port free now on 127.0.0.1 for protocol $1 (tcp or udp): the kernel picks it for a
# socket bound to port 0 (LuaJIT is there already: lj-async's build needs it).
free_port() {  # tcp|udp
  local type
  case $1 in tcp) type=1 ;; udp) type=2 ;; *) echo "free_port: tcp or udp, not '$1'" >&2; return 1 ;; esac
  LIB_SOCKET_TYPE=$type luajit -e '
local ffi = require "ffi"
ffi.cdef [[
struct lib_sockaddr_in { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };
int socket(int domain, int type, int protocol);
int bind(int fd, const void *addr, uint32_t len);
int getsockname(int fd, void *addr, uint32_t *len);
int close(int fd);
]]
local type = tonumber(os.getenv("LIB_SOCKET_TYPE"))   -- SOCK_STREAM or SOCK_DGRAM
local fd = ffi.C.socket(2, type, 0)                    -- AF_INET
local a = ffi.new("struct lib_sockaddr_in", 2, 0, 0x0100007f)  -- 127.0.0.1:0 (network byte order)
assert(fd >= 0 and ffi.C.bind(fd, a, ffi.sizeof(a)) == 0, "cannot bind a socket on 127.0.0.1")
local len = ffi.new("uint32_t[1]", ffi.sizeof(a))
assert(ffi.C.getsockname(fd, a, len) == 0)
print(bit.rshift(bit.bswap(a.port), 16))
ffi.C.close(fd)'
}

# Polls a command until it succeeds, bounded; calls the caller's fail() with what it waited for.
wait_for() {  # seconds, description, command...
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || fail "$what (not after ${limit} s)"
    sleep 0.1
  done
}
