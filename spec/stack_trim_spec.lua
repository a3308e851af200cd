-- The stack pages a thread's start touched are dropped at its first wait in the core
-- (Sources/CLJAsync/stack.c): counted with mincore(2) on the thread itself, through a test hook.
local ffi = require "ffi"
require "spec.helpers"
local core = require "lj-async.core"
local Thread = require "lj-async.thread"
local sync = require "lj-async.sync"

core.declare "host"
ffi.cdef [[ int setenv(const char *name, const char *value, int overwrite); ]]
ffi.C.setenv("LJASYNC_TESTING", "1", 1)
local hooks = ffi.cast("const struct ljasync_test_hooks *", core.C.ljasync_test_hooks())
assert(hooks ~= nil, "the core handed out no test hooks")
-- The hook's address as a number: the threads call it through their own ffi.
local resident_addr = tonumber(ffi.cast("uintptr_t", hooks.stack_resident_pages))

-- LuaJIT's parser recurses in C once per nested parenthesis (its limit is 200 levels): this
-- touches tens of KiB of the thread's stack, as making a state and loading modules do.
local DEPTH = 180

-- In a spawned thread: touches deep stack, waits once (`wait`), and reports the resident pages
-- before and after the wait, and whether deep recursion still works after it.
local function probe(addr, depth, wait, ch)
  local ffi = require "ffi"
  local resident = ffi.cast("long (*)(void)", addr)
  local deep = "return " .. ("("):rep(depth) .. "1" .. (")"):rep(depth)
  assert(loadstring(deep))
  local touched = tonumber(resident())
  if wait == "pop" then
    assert(ch:pop(0.001) == nil)                         -- an empty channel: waits, times out
  else
    require("lj-async.thread").sleep(0.001)
  end
  local after = tonumber(resident())
  -- The pages below the stack pointer come back zero-filled: a deep parse works again.
  local again = assert(loadstring(deep))()
  return touched, after, again, tonumber(resident())
end

describe("a thread's stack", function()
  for _, wait in ipairs { "pop", "sleep" } do
    it("drops the pages below its stack pointer at its first wait (" .. wait .. ")", function()
      local t = Thread.spawn(probe, resident_addr, DEPTH, wait, sync.channel())
      local ok, touched, after, again, last = t:join(30)
      t:destroy()
      assert.is_true(ok)
      -- The parse touched many pages (else this test shows nothing)...
      assert.is_true(touched >= 12, "the deep parse touched only " .. touched .. " pages")
      -- ...and after the wait only the pages above the stack pointer (the thread's top
      -- frames, its TLS) and one below remain.
      assert.is_true(after <= 6, ("%d pages resident after the wait (%d before)"):format(after, touched))
      assert.equal(1, again)
      assert.is_true(last >= touched - 2, "the second parse touched the pages again")
    end)
  end

  it("is trimmed once per thread start: a second wait drops nothing", function()
    local t = Thread.spawn(function(addr, depth, ch)
      local ffi = require "ffi"
      local resident = ffi.cast("long (*)(void)", addr)
      local deep = "return " .. ("("):rep(depth) .. "1" .. (")"):rep(depth)
      ch:pop(0.001)
      assert(loadstring(deep))
      local touched = tonumber(resident())
      ch:pop(0.001)
      return touched, tonumber(resident())
    end, resident_addr, DEPTH, sync.channel())
    local ok, touched, after = t:join(30)
    t:destroy()
    assert.is_true(ok)
    assert.is_true(touched >= 12)
    assert.is_true(after >= touched - 1, ("%d pages after the second wait, %d before"):format(after, touched))
  end)

  it("takes a signal handled on the thread after the trim", function()
    -- SIGUSR1 unblocked on the thread only, handled by a C function taking an int (srand: no
    -- effect that matters here) so the kernel builds the handler's frame on the trimmed stack.
    ffi.cdef [[
      typedef void (*ljt_sighandler)(int);
      ljt_sighandler signal(int sig, ljt_sighandler handler);
      void srand(unsigned seed);
    ]]
    local SIGUSR1 = 10
    local old = ffi.C.signal(SIGUSR1, ffi.cast("ljt_sighandler", ffi.C.srand))
    local t = Thread.spawn(function(addr, depth, ch, sig)
      local ffi = require "ffi"
      ffi.cdef [[
        typedef struct { unsigned long bits[16]; } ljt_sigset;
        int sigemptyset(ljt_sigset *s); int sigaddset(ljt_sigset *s, int sig);
        int pthread_sigmask(int how, const ljt_sigset *set, ljt_sigset *old);
        unsigned long pthread_self(void); int pthread_kill(unsigned long t, int sig);
      ]]
      local deep = "return " .. ("("):rep(depth) .. "1" .. (")"):rep(depth)
      assert(loadstring(deep))
      ch:pop(0.001)                                       -- the trim
      local set = ffi.new("ljt_sigset")
      ffi.C.sigemptyset(set); ffi.C.sigaddset(set, sig)
      assert(ffi.C.pthread_sigmask(1, set, nil) == 0)     -- SIG_UNBLOCK
      for _ = 1, 10 do assert(ffi.C.pthread_kill(ffi.C.pthread_self(), sig) == 0) end
      assert(ffi.C.pthread_sigmask(0, set, nil) == 0)     -- SIG_BLOCK again
      return assert(loadstring(deep))()
    end, resident_addr, DEPTH, sync.channel(), SIGUSR1)
    local ok, v = t:join(30)
    t:destroy()
    ffi.C.signal(SIGUSR1, old)
    assert.is_true(ok, tostring(v))
    assert.equal(1, v)
  end)
end)
