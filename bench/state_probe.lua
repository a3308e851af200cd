-- Where the bytes and microseconds of a Lua state go: N states made through LuaJIT's C API from
-- this process (ffi), each configuration in a fresh process so freed memory is not reused.
-- RSS growth per live state after a full collection in each, the Lua heap of one (lua_gc
-- count), and create and close timed separately (microseconds per state over the N).
--   luajit bench/state_probe.lua            prints the table (docs/design.md has a copy)
--   luajit bench/state_probe.lua one NAME   one configuration: "kib create_us close_us"
local ffi = require "ffi"
ffi.cdef [[
typedef struct lua_State lua_State;
typedef int (*lua_CFunction)(lua_State *L);
typedef void *(*lua_Alloc)(void *ud, void *ptr, size_t osize, size_t nsize);
lua_State *luaL_newstate(void);
lua_State *lua_newstate(lua_Alloc f, void *ud);
void lua_close(lua_State *L);
void lua_pushcclosure(lua_State *L, lua_CFunction fn, int n);
void lua_call(lua_State *L, int nargs, int nresults);
void lua_settop(lua_State *L, int idx);
int lua_gc(lua_State *L, int what, int data);
int luaL_loadbuffer(lua_State *L, const char *buff, size_t sz, const char *name);
int lua_pcall(lua_State *L, int nargs, int nresults, int errfunc);
const char *lua_tolstring(lua_State *L, int idx, size_t *len);
void luaL_openlibs(lua_State *L);
int luaopen_base(lua_State *L);   int luaopen_jit(lua_State *L);    int luaopen_package(lua_State *L);
int luaopen_string(lua_State *L); int luaopen_table(lua_State *L);  int luaopen_math(lua_State *L);
int luaopen_io(lua_State *L);     int luaopen_os(lua_State *L);     int luaopen_debug(lua_State *L);
int luaopen_bit(lua_State *L);    int luaopen_ffi(lua_State *L);
void *realloc(void *p, size_t n); void free(void *p);
int clock_gettime(int clk, void *ts);
]]
local C = ffi.C

local N = tonumber(os.getenv("PROBE_STATES")) or 500
local LUA_GCCOLLECT = 2

local function open(L, f) C.lua_pushcclosure(L, f, 0); C.lua_call(L, 0, 0) end
local function run(L, src)
  if C.luaL_loadbuffer(L, src, #src, "=probe") ~= 0 or C.lua_pcall(L, 0, 0, 0) ~= 0 then
    error(ffi.string(C.lua_tolstring(L, -1, nil)))
  end
end

local libs = { "string", "table", "math", "io", "os", "debug", "bit", "package" }
local malloc_alloc = ffi.cast("lua_Alloc", function(_, p, _, n)
  if n == 0 then C.free(p); return nil end
  return C.realloc(p, n)
end)

-- Each configuration: how to make one state.
local configs, order = {}, {}
local function config(name, make) configs[name] = make; order[#order + 1] = name end
config("bare luaL_newstate", function() return C.luaL_newstate() end)
config("+ base", function() local L = C.luaL_newstate(); open(L, C.luaopen_base); return L end)
config("+ base + jit", function() local L = C.luaL_newstate(); open(L, C.luaopen_base); open(L, C.luaopen_jit); return L end)
for _, lib in ipairs(libs) do
  config("+ base + jit + " .. lib, function()
    local L = C.luaL_newstate(); open(L, C.luaopen_base); open(L, C.luaopen_jit); open(L, C["luaopen_" .. lib]); return L
  end)
end
config("+ base + jit + ffi", function()
  local L = C.luaL_newstate(); open(L, C.luaopen_base); open(L, C.luaopen_jit); open(L, C.luaopen_ffi); return L
end)
config("all libraries (luaL_openlibs)", function() local L = C.luaL_newstate(); C.luaL_openlibs(L); return L end)
config("all + ffi", function() local L = C.luaL_newstate(); C.luaL_openlibs(L); run(L, "require 'ffi'"); return L end)
config("all + ffi + a callback's builder and wrapper", function()
  local L = C.luaL_newstate(); C.luaL_openlibs(L)
  run(L, [[local ffi = require "ffi"
    local fr = ffi.cast(ffi.typeof("struct { int32_t a1; int32_t r; } *"), ffi.new("char[8]"))
    local f = loadstring(string.dump(function(x) return x end))
    local wrap = loadstring("local fr, f = ... return function() fr.r = f(fr.a1) end")(fr, f)
    _G.keep = { fr, wrap, function(e) return debug.traceback(e, 2) end }]])
  return L
end)
config("  the same after 5,000 calls (compiled)", function()
  local L = C.luaL_newstate(); C.luaL_openlibs(L)
  run(L, [[local ffi = require "ffi"
    local buf = ffi.new("char[8]")
    local fr = ffi.cast(ffi.typeof("struct { int32_t a1; int32_t r; } *"), buf)
    local f = loadstring(string.dump(function(x) return x end))
    local wrap = loadstring("local fr, f = ... return function() fr.r = f(fr.a1) end")(fr, f)
    for i = 1, 5000 do fr.a1 = i; wrap() end
    _G.keep = { buf, fr, wrap }]])
  return L
end)
config("lua_newstate(malloc) bare", function() return C.lua_newstate(malloc_alloc, nil) end)
config("lua_newstate(malloc) + base + jit + ffi", function()
  local L = C.lua_newstate(malloc_alloc, nil); open(L, C.luaopen_base); open(L, C.luaopen_jit); open(L, C.luaopen_ffi); return L
end)

local ts = ffi.new("int64_t[2]")
local function now() C.clock_gettime(1, ts); return tonumber(ts[0]) + tonumber(ts[1]) * 1e-9 end
local function rss_kib()
  local f = io.open("/proc/self/statm"); local _, rss = f:read("*n", "*n"); f:close(); return rss * 4
end

-- `luajit bench/state_probe.lua chunks`: what LuaJIT's allocator adds to the heap of one state:
-- the same configurations made with lua_newstate and a counting allocator (over malloc), live
-- allocations after a full collection, their bytes, and the chunks dlmalloc (lj_alloc.c) gives
-- them: 8 bytes of header, rounded up to 16, at least 32. The rest of a state's RSS beyond its
-- chunks is the arena's own: its malloc_state (~0.9 KiB), the page holding the segment's end
-- fencepost (lj_alloc.c init_top writes it at the end of the 128 KiB segment: one page each),
-- the unused part of the top page, and chunks freed by the state's making (its peak).
if arg[1] == "chunks" then
  local live, bytes, chunks, peak = 0, 0, 0, 0
  local function csize(n) local c = bit.band(n + 8 + 15, bit.bnot(15)); return c < 32 and 32 or c end
  local counting = ffi.cast("lua_Alloc", function(_, p, o, n)
    if p ~= nil then live, bytes, chunks = live - 1, bytes - tonumber(o), chunks - csize(tonumber(o)) end
    if n == 0 then C.free(p); return nil end
    live, bytes, chunks = live + 1, bytes + tonumber(n), chunks + csize(tonumber(n))
    if chunks > peak then peak = chunks end
    return C.realloc(p, n)
  end)
  local function base_jit_ffi(L) open(L, C.luaopen_base); open(L, C.luaopen_jit); open(L, C.luaopen_ffi) end
  print(("%-34s %6s %9s %10s %10s"):format("state (lua_newstate, counted)", "allocs", "heap KiB", "chunks KiB", "peak KiB"))
  for _, c in ipairs{ { "bare", function() end }, { "+ base + jit + ffi", base_jit_ffi },
                      { "all + ffi", function(L) C.luaL_openlibs(L); run(L, "require 'ffi'") end } } do
    live, bytes, chunks, peak = 0, 0, 0, 0
    local L = C.lua_newstate(counting, nil)
    c[2](L)
    C.lua_gc(L, LUA_GCCOLLECT, 0)
    print(("%-34s %6d %9.1f %10.1f %10.1f"):format(c[1], live, bytes / 1024, chunks / 1024, peak / 1024))
    C.lua_close(L)
  end
  return
end

if arg[1] == "one" then
  local make = assert(configs[arg[2]], arg[2])
  for _ = 1, 20 do local L = make(); C.lua_gc(L, LUA_GCCOLLECT, 0); C.lua_close(L) end  -- warm
  collectgarbage(); collectgarbage()
  local held = {}
  local before = rss_kib()
  local t0 = now()
  for i = 1, N do held[i] = make() end
  local t1 = now()
  for i = 1, N do C.lua_gc(held[i], LUA_GCCOLLECT, 0) end
  collectgarbage(); collectgarbage()
  local kib = (rss_kib() - before) / N
  local heap = (C.lua_gc(held[1], 3, 0) * 1024 + C.lua_gc(held[1], 4, 0)) / 1024  -- GCCOUNT, GCCOUNTB
  local t2 = now()
  for i = 1, N do C.lua_close(held[i]) end
  local t3 = now()
  io.write(("%.1f %.1f %.1f %.1f\n"):format(kib, heap, (t1 - t0) / N * 1e6, (t3 - t2) / N * 1e6))
  return
end

local exe = arg[-1] or "luajit"
print(("Lua state weight, %s, %d live states per fresh process (RSS growth after a full collection)"):format(jit.version, N))
print(("%-46s %8s %9s %10s %9s"):format("state", "RSS KiB", "heap KiB", "create us", "close us"))
for _, name in ipairs(order) do
  local p = io.popen(("%s %s one %q"):format(exe, arg[0], name))
  local out = p:read("*a"); p:close()
  local kib, heap, cr, cl = out:match("(%S+) (%S+) (%S+) (%S+)")
  print(("%-46s %8s %9s %10s %9s"):format(name, kib or "?", heap or "?", cr or "?", cl or out))
end
