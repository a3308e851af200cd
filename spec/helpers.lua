-- Shared by every spec: the C test drivers, and a way to capture what the core writes to stderr.
local ffi = require "ffi"

local H = {}

-- busted (busted/luajit.lua) wraps ffi.typeof in a cache keyed by its first argument, so
-- ffi.typeof("$ *", ct) would return the first type ever made and ffi.typeof(cdata) would keep
-- every value alive. Specs need LuaJIT's own ffi.typeof (modules are loaded once: see .busted).
for i = 1, 8 do
  local name, v = debug.getupvalue(ffi.typeof, i)
  if not name then break end
  if name == "original" then ffi.typeof = v; break end
end

ffi.cdef [[
int ljt_call_int(int (*fp)(int), int x);
int ljt_plain(int x);
double ljt_loop_ns(int (*fp)(int), int n);
double ljt_call_threads(int (*fp)(int), int nthreads, int calls, long long *sums);
void *ljt_call_later(int (*fp)(int), int arg);
int ljt_call_later_join(void *p);
void ljt_store(int (*fp)(int));
int ljt_call_stored(int x);
void ljt_flag_set(int i, int v);
int ljt_flag_get(int i);
void ljt_flag_set_after(int i, int ms);
int dup(int fd); int dup2(int a, int b); int close(int fd);
int open(const char *path, int flags, int mode);
]]

local testc = os.getenv("LJASYNC_TESTC") or "build/libljasync_testc.so"
H.C = ffi.load(testc)

function H.pack(...) return { n = select("#", ...), ... } end

--- Runs fn with fd 2 redirected to a file; returns fn's results and what was written there.
function H.capture_stderr(fn, ...)
  local path = os.tmpname()
  io.stderr:flush()
  local saved = ffi.C.dup(2)
  local fd = ffi.C.open(path, 577, 420)  -- O_WRONLY|O_CREAT|O_TRUNC, 0644
  ffi.C.dup2(fd, 2); ffi.C.close(fd)
  local res = H.pack(pcall(fn, ...))
  ffi.C.dup2(saved, 2); ffi.C.close(saved)
  local f = io.open(path, "rb"); local out = f:read("*a"); f:close(); os.remove(path)
  if not res[1] then error(res[2], 0) end
  return out, unpack(res, 2, res.n)
end

return H
