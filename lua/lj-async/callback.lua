-- lj-async.callback: Lua functions as C function pointers that are safe to call from any thread.
local ffi = require "ffi"
local core = require "lj-async.core"
core.declare "callback"
-- Callback types are read by LuaJIT's own parser and type table (lj-async.ctype explains why):
-- a second parser here would disagree with the ffi.cast rule the README promises.
local ctype = require "lj-async.ctype"
if package.loaded["love.filesystem"] then require "lj-async.love" end  -- LÖVE: game modules for new states (docs/love.md)

local C = core.C
local errbuf, errbuf_size = core.errbuf, core.errbuf_size
local ffi_string, ffi_cast, ffi_typeof = ffi.string, ffi.cast, ffi.typeof
local type, tostring, error, pcall, select = type, tostring, error, pcall, select

local K = ctype.K
local kind_size = { [K.void] = 0, [K.int8] = 1, [K.uint8] = 1, [K.bool] = 1, [K.int16] = 2, [K.uint16] = 2,
                    [K.int32] = 4, [K.uint32] = 4, [K.float] = 4, [K.int64] = 8, [K.uint64] = 8,
                    [K.double] = 8, [K.pointer] = 8 }

local u64x2 = ffi_typeof("uint64_t[2]")
-- The builder's arguments, passed to the core (which copies them); reused by every creation.
local scratch_parts = {}
local NPARTS = 9
local scratch_ptrs, scratch_lens = ffi.new("const char *[?]", NPARTS), ffi.new("size_t[?]", NPARTS)

-- Pointer types to store a value of each kind (the default result).
local kind_pointer = {
  [K.int8] = "int8_t *", [K.uint8] = "uint8_t *", [K.int16] = "int16_t *", [K.uint16] = "uint16_t *",
  [K.int32] = "int32_t *", [K.uint32] = "uint32_t *", [K.int64] = "int64_t *", [K.uint64] = "uint64_t *",
  [K.float] = "float *", [K.double] = "double *", [K.pointer] = "void **", [K.bool] = "bool *",
}

local function bad(ct, msg, level)
  if #ct > 120 then ct = ("%s... (%d characters)"):format(ct:sub(1, 100), #ct) end
  error(("bad ctype '%s': %s"):format(ct, msg), level + 1)
end

-- The builder runs in each new callback state: it makes the argument frame, loads the
-- function and returns (traceback handler, wrapper, error handler). It must stay upvalue-free.
-- Kept as source so it can capture no upvalue of this module. Functions with upvalues (the
-- callback's, the on_error handler's) come as the address of a message (`encoded`, owned by
-- the Callback object) that it decodes: only such callbacks load the encoder into their states.
local builder_source = [==[
local addr, fn, name, wrapper, fields, pre, post, cdef, on_error, encoded = ...
local ffi = require "ffi"
-- Declarations the types need that a cdef may repeat (incomplete tags, typedefs), then the
-- user's cdef, then those a cdef may already have made (enum bodies: first alternative that works).
if pre ~= "" then ffi.cdef(pre) end
if cdef then
  local ok, err = pcall(ffi.cdef, cdef)
  if not ok then error("bad option 'cdef': " .. tostring(err), 0) end
end
if post ~= "" then  -- (gmatch would open the string library of a light state for nothing)
  for line in post:gmatch("[^\n]+") do
    for alt in line:gmatch("[^\t]+") do
      if pcall(ffi.cdef, alt) then break end
    end
  end
end
local ok, frame = pcall(ffi.cast, ffi.typeof("struct { " .. fields .. " } *"), addr)
if not ok then
  error(("a type is unknown in the callback's state (declare it with the 'cdef' option): %s"):format(frame), 0)
end
local f, handler
if encoded then
  f, handler = require("lj-async.encoder").decode_message(ffi.cast("ljasync_message *", tonumber(encoded)))
end
f = f or assert(loadstring(fn, name))
local wrap = loadstring(wrapper, "=lj-async wrapper")(frame, f)
if handler then on_error = handler elseif on_error then on_error = assert(loadstring(on_error, "=on_error")) end
local function traceback(e)
  return debug.traceback(type(e) == "string" and e or tostring(e), 2)
end
return traceback, wrap, on_error
]==]
local builder_code = string.dump(assert(loadstring(builder_source, "=lj-async builder")))
-- (Not registered as init code: every thread and worker state would load it too. A callback's
-- state loads it from the spec, ~2 us.)

-- Source of the wrapper for a given arity: reads the frame, calls, stores the result.
-- Up to DIRECT_ARGS arguments go straight into the call; above, Lua's limit of ~250 registers
-- per function is near, so they go through a table (no expression grows with the arity).
-- The self-assignment of `fr, f` marks them mutable, so the JIT loads them instead of
-- specializing the trace to this closure: a specialized root trace rewrites its frame's
-- function slot on every return, as two 4-byte stores the interpreter then reads as one 8-byte
-- load (a store-forwarding stall, ~6 ns of a ~44 ns call here).
local WRAPPER_HEAD = "local fr, f = ...\nfr, f = fr, f\n"
local DIRECT_ARGS = 100
local wrapper_cache = {}
local function wrapper_source(nargs, has_result)
  local key = nargs * 2 + (has_result and 1 or 0)
  local src = wrapper_cache[key]
  if src then return src end
  local args = {}
  for i = 1, nargs do args[i] = "fr.a" .. i end
  if nargs <= DIRECT_ARGS then
    src = (WRAPPER_HEAD .. "return function() %sf(%s) end")
      :format(has_result and "fr.r = " or "", table.concat(args, ", "))
  else
    local fill = {}
    for i = 1, nargs do fill[i] = ("t[%d] = fr.a%d"):format(i, i) end
    src = (WRAPPER_HEAD .. "local unpack = unpack\nreturn function() local t = {}\n%s\n%sf(unpack(t, 1, %d)) end")
      :format(table.concat(fill, "\n"), has_result and "fr.r = " or "", nargs)
  end
  src = string.dump(assert(loadstring(src, "=lj-async wrapper")))  -- bytecode loads faster
  wrapper_cache[key] = src
  return src
end

-- -- Code of the callback --

-- -- Callback objects --

local Callback = {}
Callback.__index = Callback

-- Methods called with a dot (cb.free()) or on something else get an error saying so.
local function check_self(self, method)
  if getmetatable(self) ~= Callback then
    error(("bad self to '%s': expected a callback, got %s (call it as cb:%s())"):format(method, type(self), method), 3)
  end
end

--- The function pointer: a cdata of the callback's ctype in this state.
function Callback:funcptr()
  check_self(self, "funcptr")
  local fp = self._fp
  if not fp then error("callback has been freed", 2) end
  return fp
end

--- Frees the callback and its states. Calls in flight finish first. May be called twice.
function Callback:free()
  check_self(self, "free")
  local h = self._h
  if h then
    self._h, self._fp = nil, nil
    ffi.gc(h, nil)
    C.ljasync_callback_free(h)
    local m = self._encoded
    if m then self._encoded = nil; C.ljasync_message_free(m) end  -- no state decodes it any more
  end
end
Callback.destroy = Callback.free

--- Number of errors raised in the callback so far, and the last message (with traceback).
function Callback:errors()
  check_self(self, "errors")
  local h = self._h
  if not h then return 0, nil end
  local n = tonumber(C.ljasync_callback_errors(h, errbuf, errbuf_size))
  local msg = ffi_string(errbuf)
  return n, msg ~= "" and msg or nil
end

--- Number of Lua states the callback currently holds.
function Callback:states()
  check_self(self, "states")
  return self._h and C.ljasync_callback_states(self._h) or 0
end

function Callback:__tostring()
  return ("lj-async.callback<%s>%s"):format(self._type.ctype, self._h and "" or " (freed)")
end

-- -- Types --

local Type = {}
Type.__index = Type

-- memory_limit needs lua_newstate with an allocator: 64-bit LuaJIT without GC64 only has its own
-- (lua_newstate there fails, lib_aux.c).
local custom_allocators = ffi.abi("gc64") or not ffi.abi("64bit")

-- CPUs this process may run on (its affinity mask), for states = "parallel".
local function cpu_count()
  return require("lj-async.thread").cpus()
end

--- The most states one callback may hold (`states = n`); "parallel" is capped to it too.
local MAX_STATES = 1024

-- Option names, for the unknown-key check.
-- What the values of a callback's message are, for refusals (core.encode_code).
local ENCODED_WHATS = { "callback function", "option 'on_error'" }

local OPTIONS = { "cdef", "default", "memory_limit", "name", "on_error", "states" }

-- Integer ranges of the result kinds, for `default`: lowest value, and the first one past the top.
local int_range = {
  [K.int8] = { -2 ^ 7, 2 ^ 7 }, [K.uint8] = { 0, 2 ^ 8 }, [K.int16] = { -2 ^ 15, 2 ^ 15 },
  [K.uint16] = { 0, 2 ^ 16 }, [K.int32] = { -2 ^ 31, 2 ^ 31 }, [K.uint32] = { 0, 2 ^ 32 },
  [K.int64] = { -2 ^ 63, 2 ^ 63 }, [K.uint64] = { 0, 2 ^ 64 },
}

local kind_name = {}
for k, v in pairs(K) do kind_name[v] = k == "bool" and "bool" or k .. "_t" end

-- A struct holding one field of the result type, as the creating state spells it (the frame's
-- own spelling); false when that spelling names types only the callback's state has (anonymous
-- structs and enums), and the result kind's C type stands in.
local function result_box(sig)
  if sig.result_box == nil then
    local ok, ct = pcall(ffi_typeof, "struct { " .. sig.result_field .. "; }")
    sig.result_box = ok and ct or false
  end
  return sig.result_box
end

-- The raw bytes `default` becomes: converted to the result type here, in the creating state,
-- by LuaJIT's own conversion (as the callback's results are), or an error naming the option.
local function default_bytes(sig, v, level)
  local kind = sig.kinds[1]
  if kind == K.void then error("bad option 'default': the callback returns void", level + 1) end
  local range = int_range[kind]
  if range and type(v) == "number" and (v ~= math.floor(v) or v < range[1] or v >= range[2]) then
    error(("bad option 'default': %s does not fit the result type (%s)"):format(tostring(v), kind_name[kind]), level + 1)
  end
  local bytes = u64x2()
  local box = result_box(sig)
  local ok, err = pcall(function()
    if box then
      local b = box()
      b.r = v
      ffi.copy(bytes, b, ffi.sizeof(b))
    else
      ffi_cast(ffi_typeof(kind_pointer[kind]), bytes)[0] = v
    end
  end)
  if not ok then
    error(("bad option 'default': %s"):format(tostring(err):gsub("^[^\n]-:%d+: ", "")), level + 1)
  end
  return bytes
end

--- Creates a callback running `f` (function, source or bytecode). Options:
---   default = value returned to C when the callback fails (0/NULL/false if absent)
---   on_error = function(msg) or source, run in the callback's state when it fails
---   cdef = declarations to run in the callback's state (typedefs, structs)
---   states = n (1..MAX_STATES) or "parallel": up to n states serve parallel callers (default 1: serialized)
---   memory_limit = bytes per state; exhausting it is an ordinary error
---   name = a label for messages
function Type:new(f, opts)
  if getmetatable(self) ~= Type then
    error(("bad self to 'new': expected a callback type, got %s (call it as T(f) or T:new(f))"):format(type(self)), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then error("bad options: expected a table", 2) end
  opts = opts or {}
  core.check_options(opts, OPTIONS, 2)
  core.check_bytecode(f, "bad argument #1 to 'T'", 2)
  local code = core.portable_code(f, "callback function", 2)
  local handler, on_error = opts.on_error, nil
  if handler ~= nil then
    core.check_bytecode(handler, "bad option 'on_error'", 2)
    on_error = core.portable_code(handler, "option 'on_error'", 2, "=on_error")
  end
  if opts.cdef ~= nil and type(opts.cdef) ~= "string" then
    error(("bad option 'cdef': expected a string, got %s"):format(type(opts.cdef)), 2)
  end
  if opts.name ~= nil and type(opts.name) ~= "string" then
    error(("bad option 'name': expected a string, got %s"):format(type(opts.name)), 2)
  end

  local sig = self._sig
  local default = opts.default ~= nil and default_bytes(sig, opts.default, 2) or u64x2()

  local states = opts.states or 1
  if states == "parallel" then states = math.min(cpu_count(), MAX_STATES) end
  if type(states) ~= "number" or states < 1 or states ~= math.floor(states) then
    error("bad option 'states': expected a positive integer or 'parallel'", 2)
  end
  if states > MAX_STATES then
    error(("bad option 'states': at most %d states per callback, got %s"):format(MAX_STATES, tostring(states)), 2)
  end
  local limit = opts.memory_limit or 0
  if opts.memory_limit ~= nil and (type(limit) ~= "number" or not (limit >= 1 and limit <= 2 ^ 53) or limit ~= math.floor(limit)) then
    error(("bad option 'memory_limit': expected a whole number of bytes from 1 to 2^53, got %s")
      :format(type(limit) == "number" and tostring(limit) or type(limit)), 2)
  end
  if limit > 0 and not custom_allocators then
    error("bad option 'memory_limit': not available on this LuaJIT (64-bit LuaJIT without GC64 has no custom allocators)", 2)
  end

  -- Functions with upvalues (no code above) cross in a message the callback owns (freed if
  -- creation fails).
  local encoded = nil
  if not code or handler ~= nil and not on_error then
    encoded = ffi.gc(core.encode_code(ENCODED_WHATS, 2, (not code) and f or nil,
      (handler ~= nil and not on_error) and handler or nil), C.ljasync_message_free)
  end

  local name = opts.name or self.ctype
  local parts = scratch_parts
  parts[1], parts[2], parts[3], parts[4], parts[5], parts[6], parts[7], parts[8] =
    code, "=" .. name, sig.wrapper, sig.fields, sig.pre, sig.post, opts.cdef, on_error
  parts[9] = encoded and ("%.17g"):format(tonumber(ffi_cast("uintptr_t", encoded)))
  local ptrs, lens = scratch_ptrs, scratch_lens
  for i = 1, NPARTS do
    local part = parts[i]
    if part then ptrs[i - 1] = part; lens[i - 1] = #part else ptrs[i - 1] = nil; lens[i - 1] = 0 end
  end
  local h = C.ljasync_callback_new(name, builder_code, #builder_code, NPARTS, ptrs, lens,
    sig.nparams, sig.kinds_c, sig.offsets_c, sig.frame_size, default, states, limit, errbuf, errbuf_size)
  for i = 1, NPARTS do parts[i] = nil end  -- the core copied them
  if h == nil then
    local why = ffi_string(errbuf)
    if why:match("^bad option 'cdef': ") then error(why, 2) end  -- from the builder (above)
    if limit > 0 and why:match("out of memory") then why = ("%s (memory_limit is %d bytes)"):format(why, limit) end
    error(("cannot create callback '%s': %s"):format(name, why), 2)
  end
  if encoded then
    -- The callback's states may decode the message until the callback is freed: one finalizer
    -- frees both, in that order.
    ffi.gc(encoded, nil)
    ffi.gc(h, function(p) C.ljasync_callback_free(p); C.ljasync_message_free(encoded) end)
  else
    ffi.gc(h, C.ljasync_callback_free)
  end
  -- _default: a pointer default (a cdata, a string) must outlive the callback that returns it.
  return setmetatable({ _h = h, _fp = ffi_cast(self._ct, C.ljasync_callback_funcptr(h)), _type = self,
                        _default = opts.default, _encoded = encoded }, Callback)
end
Type.__call = Type.new

function Type:__tostring() return ("lj-async.callback type<%s>"):format(self.ctype) end

-- What the core and the builder need: kinds and frame offsets (natural alignment: every field
-- is a scalar), the frame's fields as C text, the declarations around the user's cdef, the wrapper.
local function analyse(ct, level)
  local fct, sig = ctype.read(ct)
  if not fct then bad(ct, sig, level + 1) end
  local n = sig.nparams
  local offset = 0
  sig.kinds_c = ffi.new("uint8_t[?]", n + 1)
  sig.offsets_c = ffi.new("uint32_t[?]", n + 1)
  for i = 1, n + 1 do
    local kind = sig.kinds[i]
    sig.kinds_c[i - 1] = kind
    local size = kind_size[kind]
    if size > 0 then
      offset = math.ceil(offset / size) * size
      sig.offsets_c[i - 1] = offset
      offset = offset + size
    end
  end
  sig.frame_size = math.max(8, math.ceil(offset / 8) * 8)
  sig.result_field = sig.kinds[1] ~= K.void and sig.fields[1] or nil  -- "T r", for `default`
  sig.fields = #sig.fields > 0 and table.concat(sig.fields, "; ") .. ";" or "char unused;"
  sig.pre = table.concat(sig.pre, "\n")
  sig.post = table.concat(sig.post, "\n")
  sig.wrapper = wrapper_source(n, sig.kinds[1] ~= K.void)
  return fct, sig
end

local types = setmetatable({}, { __mode = "v" })

--- CallbackFactory(ctype_string) -> callback type (the same object for the same string).
local function factory(ct)
  if type(ct) ~= "string" then
    if type(ct) == "cdata" and tostring(ct):match("^ctype<") then
      error(("bad ctype %s: pass the type as a string, e.g. CallbackFactory(\"%s\") (ctypes cannot be moved between states)")
        :format(tostring(ct), ctype.spelling(ct)), 2)
    end
    error(("bad ctype: expected a string, got %s (ctypes cannot be moved between states)"):format(type(ct)), 2)
  end
  local t = types[ct]
  if t then return t end
  local fct, sig = analyse(ct, 2)
  t = setmetatable({ ctype = ct, _ct = fct, _sig = sig }, Type)
  types[ct] = t
  return t
end

return setmetatable({
  --- Code run by every new state (callbacks, threads, workers), as Luanti's register_async_dofile.
  add_init = function(code, name) core.add_init(code, name) end,
  --- Runs the Lua file at `path` in every new state.
  add_init_file = function(path)
    local src, chunkname = require("lj-async.love").read(path)  -- in LÖVE, a love.filesystem path first
    if not src then error("cannot read init file: " .. tostring(chunkname), 2) end
    core.add_init(src, chunkname)
  end,
  --- How many callbacks exist (created, not yet freed or collected).
  live = function() return tonumber(C.ljasync_callback_live()) end,
  --- "libffi" or "stub": the entry a callback's function pointer is (for tests).
  _entry = function(cb) return C.ljasync_callback_uses_libffi(cb._h) == 1 and "libffi" or "stub" end,
  Callback = Callback,
  Type = Type,
}, { __call = function(_, ct) return factory(ct) end })
