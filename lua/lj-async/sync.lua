-- lj-async.sync: mutexes, conditions, semaphores, channels, atomic counters and shared memory
-- that every Lua state (main, callbacks, threads) can use and pass to the others.
local ffi = require "ffi"
local core = require "lj-async.core"
local encoder = require "lj-async.encoder"

local C = core.C
local errbuf, errbuf_size = core.errbuf, core.errbuf_size
local ffi_string, ffi_cast, ffi_gc, ffi_typeof, ffi_istype = ffi.string, ffi.cast, ffi.gc, ffi.typeof, ffi.istype
local type, tonumber, tostring, error, pcall, select = type, tonumber, tostring, error, pcall, select
local floor, huge = math.floor, math.huge

core.cdef_once("ljasync_cell", [[
typedef struct ljasync_mutex ljasync_mutex;
typedef struct ljasync_cond ljasync_cond;
typedef struct ljasync_sem ljasync_sem;
typedef struct ljasync_channel ljasync_channel;
typedef struct ljasync_atomic ljasync_atomic;
typedef struct ljasync_shared ljasync_shared;

struct ljasync_mutex_h { ljasync_mutex *p; };
struct ljasync_cond_h { ljasync_cond *p; };
struct ljasync_sem_h { ljasync_sem *p; };
struct ljasync_channel_h { ljasync_channel *p; };
struct ljasync_atomic_h { ljasync_atomic *p; int64_t *v; };
struct ljasync_shared_h { ljasync_shared *p; uint8_t *bytes; size_t nbytes; };

typedef struct ljasync_cell {
  uint32_t tag, len;
  union { double n; char s[24]; struct { char *p; size_t size; } h; ljasync_message *m; };
} ljasync_cell;

intptr_t ljasync_sync_live_objects(void);

ljasync_mutex *ljasync_mutex_new(void);
int32_t ljasync_mutex_lock(ljasync_mutex *m, double timeout);
int32_t ljasync_mutex_unlock(ljasync_mutex *m);
int32_t ljasync_mutex_held(ljasync_mutex *m);

ljasync_cond *ljasync_cond_new(void);
int32_t ljasync_cond_wait(ljasync_cond *c, ljasync_mutex *m, double timeout);
void ljasync_cond_signal(ljasync_cond *c);
void ljasync_cond_broadcast(ljasync_cond *c);

ljasync_sem *ljasync_sem_new(intptr_t count);
int32_t ljasync_sem_post(ljasync_sem *s, intptr_t n);
int32_t ljasync_sem_wait(ljasync_sem *s, double timeout);
intptr_t ljasync_sem_value(ljasync_sem *s);

ljasync_atomic *ljasync_atomic_new(int64_t v);
int64_t *ljasync_atomic_address(ljasync_atomic *a);
int64_t ljasync_atomic_load(ljasync_atomic *a);
void ljasync_atomic_store(ljasync_atomic *a, int64_t v);
int64_t ljasync_atomic_add(ljasync_atomic *a, int64_t d);
int64_t ljasync_atomic_exchange(ljasync_atomic *a, int64_t v);
int32_t ljasync_atomic_cas(ljasync_atomic *a, int64_t expected, int64_t desired, int64_t *found);

ljasync_shared *ljasync_shared_new(intptr_t size, char *err, size_t errlen);
uint8_t *ljasync_shared_ptr(ljasync_shared *b);
intptr_t ljasync_shared_size(ljasync_shared *b);

ljasync_channel *ljasync_channel_new(intptr_t capacity);
int32_t ljasync_channel_push_number(ljasync_channel *c, double v, double timeout);
int32_t ljasync_channel_push_simple(ljasync_channel *c, int32_t tag, double timeout);
int32_t ljasync_channel_push_string(ljasync_channel *c, const char *s, size_t len, double timeout);
int32_t ljasync_channel_push_message(ljasync_channel *c, ljasync_message *m, double timeout);
int32_t ljasync_channel_push_cells(ljasync_channel *c, const ljasync_cell *cells, int32_t n, double timeout);
int32_t ljasync_channel_pop(ljasync_channel *c, ljasync_cell *out, int32_t max, double timeout);
void ljasync_channel_bytes_free(char *p);
void ljasync_channel_cells_release(ljasync_cell *cells, int32_t n);
void ljasync_channel_close(ljasync_channel *c);
intptr_t ljasync_channel_length(ljasync_channel *c);
int32_t ljasync_channel_closed(ljasync_channel *c);
intptr_t ljasync_channel_capacity(ljasync_channel *c);
intptr_t ljasync_channel_waiters(ljasync_channel *c);
]])

-- Hot functions as upvalues: the JIT then calls them directly.
local retain, release = C.ljasync_object_retain, C.ljasync_object_release
local mutex_lock, mutex_unlock = C.ljasync_mutex_lock, C.ljasync_mutex_unlock
local cond_wait, cond_signal, cond_broadcast = C.ljasync_cond_wait, C.ljasync_cond_signal, C.ljasync_cond_broadcast
local sem_post, sem_wait = C.ljasync_sem_post, C.ljasync_sem_wait
local atomic_load, atomic_store, atomic_add = C.ljasync_atomic_load, C.ljasync_atomic_store, C.ljasync_atomic_add
local atomic_exchange, atomic_cas = C.ljasync_atomic_exchange, C.ljasync_atomic_cas
local push_number, push_simple, push_string = C.ljasync_channel_push_number, C.ljasync_channel_push_simple,
  C.ljasync_channel_push_string
local push_message, push_cells, chan_pop = C.ljasync_channel_push_message, C.ljasync_channel_push_cells,
  C.ljasync_channel_pop
local bytes_free, message_free = C.ljasync_channel_bytes_free, C.ljasync_message_free
local encode_message, decode_message = encoder.encode_message, encoder.decode_message

-- Tags of ljasync_cell, as Sources/LJAsync/Sync/ChannelCell.swift numbers them.
local T_NIL, T_FALSE, T_TRUE, T_NUMBER, T_SHORT, T_HEAP, T_MESSAGE = 0, 1, 2, 3, 4, 5, 6
local INLINE = 24

-- Scratch, allocated once per state (a state runs one Lua thread at a time, and nothing
-- between a C call and the reads of its results can re-enter these functions).
local BATCH = 256
local cells = ffi.new("ljasync_cell[?]", BATCH)
local found = ffi.new("int64_t[1]")

-- Called before a slow path (the encoder). It is a builtin the JIT does not compile, so a
-- trace reaching it ends cleanly (stitches) instead of recording into the encoder: aborts
-- there would count against the hot function the trace started in (Channel:push or :pop)
-- and blacklist it, leaving even numbers interpreted in that state from then on.
local trace_barrier = coroutine.running

local M = {}

-- -- Arguments --

-- Seconds for the core: nil (or math.huge) = forever (-1), else a non-negative number.
local function timeout_arg(t, level)
  if t == nil or t == huge then return -1 end
  if type(t) ~= "number" or t < 0 or t ~= t then
    error("bad timeout: expected nil or seconds >= 0, got " .. tostring(t), level + 1)
  end
  return t
end

local function int_arg(v, what, min, level)
  if type(v) == "cdata" and (ffi_istype("int64_t", v) or ffi_istype("uint64_t", v)) then v = tonumber(v) end
  if type(v) ~= "number" or v ~= floor(v) or v < min or v == huge then
    error(("bad %s: expected an integer >= %d, got %s"):format(what, min, tostring(v)), level + 1)
  end
  return v
end

-- -- Handles --

-- One handle type per kind: a small struct holding the object pointer, which owns one
-- reference. The finalizer (ffi.gc, set at creation) or :free() releases it.
local function release_handle(h)
  local p = h.p
  if p ~= nil then
    h.p = nil
    release(p)
  end
end

local handle_types = {}

-- Declares a kind: `cname` names its C types (ljasync_<cname>, struct ljasync_<cname>_h),
-- `name` is what users and the encoder see; `fill(h)` caches fields of a new handle.
-- Sets the metatype and registers the kind with the encoder; returns the handle ctype and a
-- constructor taking a pointer that already carries a reference for the new handle.
local function handle_kind(cname, name, methods, fill, extra_mt)
  local ct = ffi_typeof("struct ljasync_" .. cname .. "_h")
  local ptr_ct = ffi_typeof("ljasync_" .. cname .. " *")

  --- Releases this handle's reference at once (the object lives on while other handles or
  --- messages hold it). Using the handle afterwards is an error. May be called twice.
  function methods:free()
    if self.p ~= nil then
      ffi_gc(self, nil)
      release_handle(self)
    end
  end

  local mt = {
    __index = methods,
    __tostring = function(h)
      if h.p == nil then return "lj-async." .. name .. " (freed)" end
      return ("lj-async.%s: %s"):format(name, tostring(ffi_cast("void *", h.p)):match("0x%x+") or "?")
    end,
    __eq = function(a, b)
      return ffi_istype(ct, a) and ffi_istype(ct, b) and a.p == b.p
    end,
  }
  for k, v in pairs(extra_mt or {}) do mt[k] = v end
  -- A metatype is set once per state: if this module is loaded a second time (busted's
  -- insulation), handles keep the first load's methods, which behave the same.
  pcall(ffi.metatype, ct, mt)

  local function adopt(p)
    local h = ct(p)
    if fill then fill(h) end
    return ffi_gc(h, release_handle)
  end

  encoder.register_handle(name, {
    ctype = ct,
    module = "lj-async.sync",
    -- 0 for a freed handle: the encoder then refuses it, naming the value's path.
    address = function(h)
      local p = h.p
      if p == nil then return 0 end
      return tonumber(ffi_cast("uintptr_t", p))
    end,
    wrap = function(addr)
      local p = ffi_cast(ptr_ct, addr)
      retain(p)
      return adopt(p)
    end,
  })
  handle_types[name] = ct
  return ct, adopt
end

local function freed(name) error(name .. " has been freed", 3) end

-- -- Mutex --

local Mutex = {}

--- Locks, waiting at most `timeout` seconds (nil = forever, 0 = try once).
--- Returns true, or false, "timeout". Locking a mutex this thread holds is an error.
function Mutex:lock(timeout)
  local p = self.p
  if p == nil then freed("mutex") end
  local st = mutex_lock(p, timeout_arg(timeout, 2))
  if st == 0 then return true end
  if st == 1 then return false, "timeout" end
  error("mutex is already locked by this thread (lj-async mutexes are not recursive)", 2)
end

--- Tries once: true, or false, "timeout" when another thread holds it.
function Mutex:trylock()
  local p = self.p
  if p == nil then freed("mutex") end
  local st = mutex_lock(p, 0)
  if st == 0 then return true end
  if st == 1 then return false, "timeout" end
  error("mutex is already locked by this thread (lj-async mutexes are not recursive)", 2)
end

--- Unlocks. Unlocking a mutex this thread does not hold is an error (the lock is untouched).
function Mutex:unlock()
  local p = self.p
  if p == nil then freed("mutex") end
  if mutex_unlock(p) ~= 0 then error("mutex is not locked by this thread", 2) end
end

--- Whether this thread holds the mutex.
function Mutex:held()
  local p = self.p
  if p == nil then freed("mutex") end
  return C.ljasync_mutex_held(p) == 1
end

local Mutex_ct, Mutex_adopt = handle_kind("mutex", "mutex", Mutex)

--- A new unlocked mutex.
function M.mutex()
  return Mutex_adopt(C.ljasync_mutex_new())
end

-- -- Condition --

local Condition = {}

--- Releases `mutex` (held by this thread), waits for a signal or `timeout` seconds, and
--- re-locks it. Returns true, or false, "timeout". Wakeups may be spurious: wait in a loop
--- on your predicate. `timeout` 0 returns false, "timeout" at once, keeping the lock.
function Condition:wait(mutex, timeout)
  local p = self.p
  if p == nil then freed("condition") end
  if not ffi_istype(Mutex_ct, mutex) then error("bad argument #1 to 'wait': expected a mutex", 2) end
  local m = mutex.p
  if m == nil then error("bad argument #1 to 'wait': mutex has been freed", 2) end
  local st = cond_wait(p, m, timeout_arg(timeout, 2))
  if st == 0 then return true end
  if st == 1 then return false, "timeout" end
  error("bad argument #1 to 'wait': mutex is not locked by this thread", 2)
end

--- Wakes one waiter (if any).
function Condition:signal()
  local p = self.p
  if p == nil then freed("condition") end
  cond_signal(p)
end

--- Wakes every waiter.
function Condition:broadcast()
  local p = self.p
  if p == nil then freed("condition") end
  cond_broadcast(p)
end

local _, Condition_adopt = handle_kind("cond", "condition", Condition)

--- A new condition variable.
function M.condition()
  return Condition_adopt(C.ljasync_cond_new())
end

-- -- Semaphore --

local Semaphore = {}

--- Adds `n` permits (default 1) and wakes up to `n` waiters.
function Semaphore:post(n)
  local p = self.p
  if p == nil then freed("semaphore") end
  if n == nil then n = 1 else n = int_arg(n, "count", 1, 2) end
  if sem_post(p, n) ~= 0 then error("semaphore count would overflow", 2) end
end

--- Takes a permit, waiting at most `timeout` seconds (nil = forever, 0 = try once).
--- Returns true, or false, "timeout".
function Semaphore:wait(timeout)
  local p = self.p
  if p == nil then freed("semaphore") end
  if sem_wait(p, timeout_arg(timeout, 2)) == 0 then return true end
  return false, "timeout"
end

--- Takes a permit if one is there: true, or false, "timeout".
function Semaphore:try()
  local p = self.p
  if p == nil then freed("semaphore") end
  if sem_wait(p, 0) == 0 then return true end
  return false, "timeout"
end

--- The number of permits now (a snapshot).
function Semaphore:value()
  local p = self.p
  if p == nil then freed("semaphore") end
  return tonumber(C.ljasync_sem_value(p))
end

local _, Semaphore_adopt = handle_kind("sem", "semaphore", Semaphore)

--- A semaphore holding `count` permits (default 0).
function M.semaphore(count)
  if count == nil then count = 0 else count = int_arg(count, "count", 0, 2) end
  return Semaphore_adopt(C.ljasync_sem_new(count))
end

-- -- Atomic counter --

local Atomic = {}

-- Results are Lua numbers: exact up to 2^53. Arguments may be numbers or int64 cdata.
local function int64_arg(v, what)
  local tv = type(v)
  if tv == "number" then
    if v ~= floor(v) or v ~= v or v == huge or v == -huge then
      error(("bad %s: expected an integer, got %s"):format(what, tostring(v)), 3)
    end
    return v
  end
  if tv == "cdata" and (ffi_istype("int64_t", v) or ffi_istype("uint64_t", v)) then return v end
  error(("bad %s: expected an integer, got %s"):format(what, tv), 3)
end

--- The value (sequentially consistent). Goes through the core even on x86-64, where a
--- plain load would do: the JIT may hoist a plain load out of a loop, never a C call.
function Atomic:load()
  local p = self.p
  if p == nil then freed("atomic") end
  local v = tonumber(atomic_load(p))
  return v
end

--- Sets the value (sequentially consistent).
function Atomic:store(x)
  local p = self.p
  if p == nil then freed("atomic") end
  atomic_store(p, int64_arg(x, "value"))
end

--- Adds `d` (default 1; wraps on overflow) and returns the NEW value.
function Atomic:add(d)
  local p = self.p
  if p == nil then freed("atomic") end
  if d == nil then d = 1 else d = int64_arg(d, "delta") end
  local v = tonumber(atomic_add(p, d))
  return v
end

--- Subtracts `d` (default 1) and returns the new value.
function Atomic:sub(d)
  local p = self.p
  if p == nil then freed("atomic") end
  if d == nil then d = 1 else d = int64_arg(d, "delta") end
  local v = tonumber(atomic_add(p, -d))
  return v
end

--- Sets the value and returns the OLD one.
function Atomic:exchange(x)
  local p = self.p
  if p == nil then freed("atomic") end
  local old = tonumber(atomic_exchange(p, int64_arg(x, "value")))
  return old
end

--- Compare-and-swap: sets `desired` if the value is `expected`. Returns true, or false and
--- the value found.
function Atomic:cas(expected, desired)
  local p = self.p
  if p == nil then freed("atomic") end
  if atomic_cas(p, int64_arg(expected, "expected value"), int64_arg(desired, "desired value"), found) == 1 then
    return true
  end
  return false, tonumber(found[0])
end

--- The int64_t* of the value (valid while a handle lives). Plain accesses through it are
--- not atomic read-modify-writes, and compiled code may keep a loaded value in a register
--- across loop iterations: use it for bulk reads after synchronizing, not to poll.
function Atomic:ptr()
  -- self.v outlives free() (only p is cleared): checking it would hand out a dangling pointer.
  if self.p == nil then freed("atomic") end
  return self.v
end

local _, Atomic_adopt = handle_kind("atomic", "atomic", Atomic,
  function(h) h.v = C.ljasync_atomic_address(h.p) end)

--- A new 64-bit atomic counter holding `v` (default 0).
function M.atomic(v)
  if v == nil then v = 0 else v = int64_arg(v, "value") end
  return Atomic_adopt(C.ljasync_atomic_new(v))
end

-- -- Shared memory --

local Shared = {}
local ptr_types = {}  -- ctype id -> pointer ctype

--- A pointer to the first byte as `ctype *` (a ctype or its name; default uint8_t). It does
--- not keep the block alive: keep the handle while you use it.
function Shared:ptr(ctype)
  local b = self.bytes
  if self.p == nil then freed("shared block") end
  if ctype == nil then return b end
  local ok, ct = true, ctype
  if type(ctype) == "string" then ok, ct = pcall(ffi_typeof, ctype) end
  if not ok or type(ct) ~= "cdata" then error("bad ctype: " .. tostring(ok and ctype or ct), 2) end
  local id = tonumber(ct)
  local pt = ptr_types[id]
  if not pt then
    -- The comment makes the declaration unique per type: busted replaces ffi.typeof with a
    -- cache keyed by the first argument, which would hand back the first "$ *" for all.
    local made
    ok, made = pcall(ffi_typeof, "$ * /* " .. id .. " */", ct)
    if not ok then error("bad ctype: " .. tostring(made), 2) end
    pt = made
    ptr_types[id] = pt
  end
  return ffi_cast(pt, b)
end

--- Size in bytes.
function Shared:size()
  if self.p == nil then freed("shared block") end
  return tonumber(self.nbytes)
end

local _, Shared_adopt = handle_kind("shared", "shared", Shared, function(h)
  h.bytes = C.ljasync_shared_ptr(h.p)
  h.nbytes = C.ljasync_shared_size(h.p)
end, { __len = function(h) return tonumber(h.nbytes) end })

--- A zeroed block of `size` bytes, readable and writable by every state through ptr().
function M.shared(size)
  size = int_arg(size, "size", 1, 2)
  local p = C.ljasync_shared_new(size, errbuf, errbuf_size)
  if p == nil then error("cannot create shared block: " .. ffi_string(errbuf), 2) end
  return Shared_adopt(p)
end

-- -- Channel --

local Channel = {}

-- The value in cells[i] (not a number: callers handle those inline). Takes ownership of
-- what the cell holds, freeing it even when decoding fails.
local function cell_value(i, level)
  local tag = cells[i].tag
  if tag == T_SHORT then
    local s = ffi_string(cells[i].s, cells[i].len)
    return s
  end
  if tag == T_TRUE then return true end
  if tag == T_FALSE then return false end
  if tag == T_NIL then return nil end
  if tag == T_NUMBER then return cells[i].n end
  if tag == T_HEAP then
    local p = cells[i].h.p
    local ok, s = pcall(ffi_string, p, cells[i].h.size)
    bytes_free(p)
    if not ok then error(s, level + 1) end
    return s
  end
  local m = cells[i].m
  trace_barrier()
  local ok, v = pcall(decode_message, m)
  message_free(m)
  if not ok then error("cannot decode a channel value: " .. tostring(v), level + 1) end
  return v
end

local function push_status(st, level)
  if st == 0 then return true end
  if st == 1 then return false, "full" end
  if st == 2 then return false, "closed" end
  error("out of memory copying a string into the channel", level + 1)
end

-- Pushes `v` with core timeout `t`; returns the core status (0 pushed, 1 full, 2 closed,
-- -1 out of memory). Values without a fast path go through the encoder, whose errors are
-- raised at `level`.
local function push_value(p, v, t, level)
  -- No `return f(...)` of a C function in hot paths: a trace that starts in this function
  -- cannot return to its caller after such a tail call ("NYI: return to lower frame"), and
  -- falls back to the interpreter for good.
  local tv, st = type(v)
  if tv == "number" then
    st = push_number(p, v, t)
  elseif tv == "string" then
    st = push_string(p, v, #v, t)
  elseif tv == "boolean" then
    st = push_simple(p, v and T_TRUE or T_FALSE, t)
  elseif tv == "nil" then
    st = push_simple(p, T_NIL, t)
  end
  if st then return st end
  trace_barrier()
  local ok, m = pcall(encode_message, v)
  if not ok then error(m, level + 1) end
  st = push_message(p, m, t)
  if st ~= 0 then message_free(m) end  -- not taken: still ours
  return st
end

--- Pushes a copy of `v`, waiting at most `timeout` seconds while the channel is full
--- (nil = forever, 0 = try once). Returns true, or false, "full" (still full at the
--- deadline), or false, "closed". Numbers, booleans, nil and strings take a fast path;
--- anything else is copied by lj-async.encoder (which raises for what cannot move).
function Channel:push(v, timeout)
  local p = self.p
  if p == nil then freed("channel") end
  local st = push_value(p, v, timeout_arg(timeout, 2), 2)
  if st == 0 then return true end
  return push_status(st, 2)
end

--- Pushes t[i], ..., t[j] in order (default i = 1, j = #t), batching plain values (numbers,
--- booleans, strings up to 24 bytes) into one call each. Waits as push does, for each
--- batch. Returns the number pushed (j - i + 1 on success), or that number and "full" or
--- "closed" when it stopped early.
function Channel:push_many(t, i, j, timeout)
  local p = self.p
  if p == nil then freed("channel") end
  if type(t) ~= "table" then error("bad argument #1 to 'push_many': expected a table, got " .. type(t), 2) end
  i = i == nil and 1 or int_arg(i, "start index", 1, 2)
  j = j == nil and #t or int_arg(j, "end index", 0, 2)
  local tmo = timeout_arg(timeout, 2)
  local done = 0
  local k = i
  while k <= j do
    -- Fill a batch of plain cells.
    local n = 0
    while k + n <= j and n < BATCH do
      local v = t[k + n]
      local tv = type(v)
      if tv == "number" then
        cells[n].tag = T_NUMBER; cells[n].n = v
      elseif tv == "boolean" then
        cells[n].tag = v and T_TRUE or T_FALSE
      elseif tv == "nil" then
        cells[n].tag = T_NIL
      elseif tv == "string" and #v <= INLINE then
        cells[n].tag = T_SHORT; cells[n].len = #v
        ffi.copy(cells[n].s, v, #v)
      else
        break
      end
      n = n + 1
    end
    if n > 0 then
      local off = 0
      while off < n do
        local r = push_cells(p, cells + off, n - off, tmo)
        if r < 0 then
          if r == -3 then error("internal error: a cell that owns memory reached push_cells", 2) end
          return done, r == -1 and "full" or "closed"
        end
        off = off + r
        done = done + r
      end
      k = k + n
    else
      local st = push_value(p, t[k], tmo, 2)
      if st ~= 0 then return done, select(2, push_status(st, 2)) end
      done = done + 1
      k = k + 1
    end
  end
  return done
end

--- Pops the oldest value, waiting at most `timeout` seconds (nil = forever, 0 = try once).
--- Returns the value, or nil, "timeout", or nil, "closed" once the channel is closed and
--- drained. A nil that was pushed pops as a single nil (no second result).
function Channel:pop(timeout)
  local p = self.p
  if p == nil then freed("channel") end
  local n = chan_pop(p, cells, 1, timeout_arg(timeout, 2))
  if n < 0 then return nil, n == -1 and "timeout" or "closed" end
  if cells[0].tag == T_NUMBER then return cells[0].n end
  return cell_value(0, 2)
end

--- Pops without waiting: the value, or nil, "timeout" (empty), or nil, "closed".
function Channel:try_pop()
  local p = self.p
  if p == nil then freed("channel") end
  local n = chan_pop(p, cells, 1, 0)
  if n < 0 then return nil, n == -1 and "timeout" or "closed" end
  if cells[0].tag == T_NUMBER then return cells[0].n end
  return cell_value(0, 2)
end

--- Pops up to `max` values (1..256) into `out` (a table, reused if given), waiting at most
--- `timeout` for the first. Returns out, n (out[1..n] set; nils leave holes), or nil,
--- "timeout" / nil, "closed". A non-plain value (a table, ...) always comes in a batch of
--- its own.
function Channel:pop_many(max, timeout, out)
  local p = self.p
  if p == nil then freed("channel") end
  max = int_arg(max, "count", 1, 2)
  if max > BATCH then max = BATCH end
  local n = chan_pop(p, cells, max, timeout_arg(timeout, 2))
  if n < 0 then return nil, n == -1 and "timeout" or "closed" end
  if out == nil then out = {} end
  for k = 0, n - 1 do
    if cells[k].tag == T_NUMBER then out[k + 1] = cells[k].n else out[k + 1] = cell_value(k, 2) end
  end
  return out, n
end

--- Refuses further pushes and wakes every waiter; queued values can still be popped.
function Channel:close()
  local p = self.p
  if p == nil then freed("channel") end
  C.ljasync_channel_close(p)
end

--- Whether close() was called.
function Channel:closed()
  local p = self.p
  if p == nil then freed("channel") end
  return C.ljasync_channel_closed(p) == 1
end

--- Number of queued values (a snapshot).
function Channel:length()
  local p = self.p
  if p == nil then freed("channel") end
  return tonumber(C.ljasync_channel_length(p))
end

--- Number of threads blocked in push or pop on this channel now (a snapshot; diagnostics).
function Channel:waiting()
  local p = self.p
  if p == nil then freed("channel") end
  return tonumber(C.ljasync_channel_waiters(p))
end

--- Capacity, or nil when unbounded.
function Channel:capacity()
  local p = self.p
  if p == nil then freed("channel") end
  local c = tonumber(C.ljasync_channel_capacity(p))
  return c > 0 and c or nil
end

local _, Channel_adopt = handle_kind("channel", "channel", Channel, nil, { __len = function(h) return h:length() end })

--- A channel holding at most `capacity` values (nil = unbounded).
function M.channel(capacity)
  if capacity == nil then capacity = 0 else capacity = int_arg(capacity, "capacity", 1, 2) end
  return Channel_adopt(C.ljasync_channel_new(capacity))
end

-- -- Diagnostics --

--- Number of sync objects alive in the process (all states): for leak tests.
function M.live_objects()
  return tonumber(C.ljasync_sync_live_objects())
end

--- The kind name ("mutex", "channel", ...) of a sync handle, or nil for anything else.
function M.kind(v)
  if type(v) ~= "cdata" then return nil end
  for name, ct in pairs(handle_types) do
    if ffi_istype(ct, v) then return name end
  end
  return nil
end

return M
