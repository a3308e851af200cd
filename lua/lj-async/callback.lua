-- lj-async.callback: Lua functions as C function pointers that are safe to call from any thread.
local ffi = require "ffi"
local core = require "lj-async.core"

local C = core.C
local errbuf, errbuf_size = core.errbuf, core.errbuf_size
local ffi_string, ffi_cast, ffi_typeof, ffi_sizeof = ffi.string, ffi.cast, ffi.typeof, ffi.sizeof
local type, tostring, error, pcall, select = type, tostring, error, pcall, select

core.cdef_once("ljasync_callback", [[
typedef struct ljasync_callback ljasync_callback;
ljasync_callback *ljasync_callback_new(const char *label, const char *builder, size_t builder_len,
    int32_t nparts, const char **parts, const size_t *lens, int32_t nargs, const uint8_t *kinds, const uint32_t *offsets,
    int32_t frame_size, const void *default_ret, int32_t max_states, double memory_limit,
    char *err, size_t errlen);
void *ljasync_callback_funcptr(ljasync_callback *cb);
void ljasync_callback_free(ljasync_callback *cb);
intptr_t ljasync_callback_errors(ljasync_callback *cb, char *buf, size_t len);
int32_t ljasync_callback_states(ljasync_callback *cb);
intptr_t ljasync_callback_live(void);
int32_t ljasync_callback_uses_libffi(ljasync_callback *cb);
]])

-- Value kinds, as Sources/LJAsync/Callback/ValueKind.swift numbers them.
local K = { void = 0, int8 = 1, uint8 = 2, int16 = 3, uint16 = 4, int32 = 5, uint32 = 6,
            int64 = 7, uint64 = 8, float = 9, double = 10, pointer = 11, bool = 12 }

local u64x2 = ffi_typeof("uint64_t[2]")
-- The builder's arguments, passed to the core (which copies them); reused by every creation.
local scratch_parts = {}
local scratch_ptrs, scratch_lens = ffi.new("const char *[7]"), ffi.new("size_t[7]")

-- Pointer types to store a value of each kind (the default result).
local kind_pointer = {
  [K.int8] = "int8_t *", [K.uint8] = "uint8_t *", [K.int16] = "int16_t *", [K.uint16] = "uint16_t *",
  [K.int32] = "int32_t *", [K.uint32] = "uint32_t *", [K.int64] = "int64_t *", [K.uint64] = "uint64_t *",
  [K.float] = "float *", [K.double] = "double *", [K.pointer] = "void **", [K.bool] = "bool *",
}

-- -- Signature analysis (creator's state) --

-- Resolves a type spelled in the creator's state. An unknown `struct X`/`union X` is declared
-- incomplete (as C allows for pointers), here and later in the callback's state.
local function resolve(spelling, tags)
  for _ = 1, 8 do
    local ok, ct = pcall(ffi_typeof, spelling)
    if ok then return ct end
    local tag = tostring(ct):match("undeclared or implicit tag '([%w_]+)'")
    if not tag then return nil, tostring(ct) end
    local kw = spelling:match("(%a+)%s+" .. tag .. "%f[^%w_]") or "struct"
    if kw ~= "struct" and kw ~= "union" then return nil, tostring(ct) end
    local decl = kw .. " " .. tag
    ffi.cdef(decl .. ";")
    tags[#tags + 1] = decl
  end
  return nil, "too many undeclared tags"
end

-- The kind of a resolved parameter or result type, or nil and why not. Decided from LuaJIT's
-- canonical name of the type (typedefs resolved) and its size.
local function classify(ct)
  local name = tostring(ct):sub(7, -2)  -- "ctype<...>"
  local size = ffi_sizeof(ct)
  if name == "void" then return K.void end
  if name == "bool" then return K.bool end
  if name == "float" then return K.float end
  if name == "double" then return K.double end
  if name:match("%*$") or name:match("%)$") or name:match("&$") then return K.pointer end
  if name:match("^struct") or name:match("^union") then
    return nil, "structs and unions passed by value are not supported (pass a pointer)"
  end
  if name:match("complex") then return nil, "complex numbers are not supported" end
  if name:match("%]$") then return nil, "arrays cannot be passed by value" end
  local signed
  if name:match("^enum") then
    signed = tonumber(ffi.new(ct, -1)) < 0
  elseif name:match("char") or name:match("short") or name:match("int") or name:match("long") then
    signed = not (name:match("unsigned") or name:match("^uint"))
  else
    return nil, "'" .. name .. "' is not supported"
  end
  if size == 1 then return signed and K.int8 or K.uint8 end
  if size == 2 then return signed and K.int16 or K.uint16 end
  if size == 4 then return signed and K.int32 or K.uint32 end
  if size == 8 then return signed and K.int64 or K.uint64 end
  return nil, "'" .. name .. "' has an unsupported size"
end

-- How a type is spelled inside the callback's state: the creator's resolved spelling, unless
-- it names an anonymous struct (only the user's own spelling and cdef can recreate it).
local function portable_spelling(ct, original, has_cdef, kind)
  local name = tostring(ct):sub(7, -2)
  if name:match("%f[%w]struct %d") or name:match("%f[%w]union %d") or name:match("%f[%w]enum %d") then
    return original, not has_cdef
  end
  if name:match("%(") then
    -- LuaJIT prints function types without their parameters: only the user's spelling is exact.
    return original
  end
  if name:match("^enum ") and not has_cdef then
    -- Without the declarations the enum does not exist there: its values arrive as numbers.
    return kind == K.uint32 and "uint32_t" or "int32_t"
  end
  return name
end

local function bad(ct, msg, level)
  error(("bad ctype '%s': %s"):format(ct, msg), level + 1)
end

-- The builder runs in each new callback state: it makes the argument frame, loads the
-- function and returns (traceback handler, wrapper, error handler). It must stay upvalue-free.
-- Kept as source so it can capture no upvalue of this module.
local builder_source = [==[
local addr, fn, name, wrapper, types, tags, cdef, on_error = ...
local ffi = require "ffi"
if cdef then ffi.cdef(cdef) end
for tag in tags:gmatch("[^\n]+") do pcall(ffi.cdef, tag .. ";") end
-- One declaration for the whole frame; `$` only for types C cannot spell before a field name.
local fields, params, i = {}, {}, 0
for t in types:gmatch("[^\n]+") do
  local field = i == 0 and "r" or "a" .. i
  if t ~= "-" then
    if t:find("(", 1, true) then
      local ok, ct = pcall(ffi.typeof, t)
      if not ok then
        error(("parameter %d '%s' is unknown in the callback's state (declare it with the 'cdef' option): %s")
          :format(i, t, ct), 0)
      end
      params[#params + 1] = ct
      fields[#fields + 1] = "$ " .. field .. ";"
    else
      fields[#fields + 1] = t .. " " .. field .. ";"
    end
  end
  i = i + 1
end
if #fields == 0 then fields[1] = "char unused;" end
local ok, frame = pcall(ffi.cast, ffi.typeof("struct { " .. table.concat(fields, " ") .. " } *", unpack(params)), addr)
if not ok then
  error(("a type is unknown in the callback's state (declare it with the 'cdef' option): %s"):format(frame), 0)
end
local f = assert(loadstring(fn, name))
local wrap = loadstring(wrapper, "=lj-async wrapper")(frame, f)
if on_error then on_error = assert(loadstring(on_error, "=on_error")) end
local function traceback(e)
  return debug.traceback(type(e) == "string" and e or tostring(e), 2)
end
return traceback, wrap, on_error
]==]
local builder_code = string.dump(assert(loadstring(builder_source, "=lj-async builder")))
-- Prepared states get the builder ready-made, so creating a callback does not load it.
core.add_init(string.dump(assert(loadstring(  -- as bytecode: its string constant loads without lexing
  ("package.loaded['lj-async.builder'] = loadstring(%q, '=lj-async builder')"):format(builder_code)))),
  "=lj-async builder")

-- Source of the wrapper for a given arity: reads the frame, calls, stores the result.
local wrapper_cache = {}
local function wrapper_source(nargs, has_result)
  local key = nargs * 2 + (has_result and 1 or 0)
  local src = wrapper_cache[key]
  if src then return src end
  local args = {}
  for i = 1, nargs do args[i] = "fr.a" .. i end
  src = ("local fr, f = ...\nreturn function() %sf(%s) end")
    :format(has_result and "fr.r = " or "", table.concat(args, ", "))
  src = string.dump(assert(loadstring(src, "=lj-async wrapper")))  -- bytecode loads faster
  wrapper_cache[key] = src
  return src
end

-- -- Code of the callback --

-- -- Callback objects --

local Callback = {}
Callback.__index = Callback

--- The function pointer: a cdata of the callback's ctype in this state.
function Callback:funcptr()
  local fp = self._fp
  if not fp then error("callback has been freed", 2) end
  return fp
end

--- Frees the callback and its states. Calls in flight finish first. May be called twice.
function Callback:free()
  local h = self._h
  if h then
    self._h, self._fp = nil, nil
    ffi.gc(h, nil)
    C.ljasync_callback_free(h)
  end
end
Callback.destroy = Callback.free

--- Number of errors raised in the callback so far, and the last message (with traceback).
function Callback:errors()
  local h = self._h
  if not h then return 0, nil end
  local n = tonumber(C.ljasync_callback_errors(h, errbuf, errbuf_size))
  local msg = ffi_string(errbuf)
  return n, msg ~= "" and msg or nil
end

--- Number of Lua states the callback currently holds.
function Callback:states()
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

--- Creates a callback running `f` (function, source or bytecode). Options:
---   default = value returned to C when the callback fails (0/NULL/false if absent)
---   on_error = function(msg) or source, run in the callback's state when it fails
---   cdef = declarations to run in the callback's state (typedefs, structs)
---   states = n or "parallel": up to n states serve parallel callers (default 1: serialized)
---   memory_limit = bytes per state; exhausting it is an ordinary error
---   name = a label for messages
function Type:new(f, opts)
  if opts ~= nil and type(opts) ~= "table" then error("bad options: expected a table", 2) end
  opts = opts or {}
  local code = core.portable_code(f, "callback function", 2, "its new Lua state")
  local on_error = opts.on_error and core.portable_code(opts.on_error, "on_error handler", 2, "its new Lua state")
  if opts.cdef ~= nil and type(opts.cdef) ~= "string" then error("bad option 'cdef': expected a string", 2) end

  local sig = self._sig
  local layout = opts.cdef and self:_layout(true) or self._plain_layout or self:_layout(false)
  local default = u64x2()
  if opts.default ~= nil then
    if not sig.ret then error("bad option 'default': the callback returns void", 2) end
    local ok, err = pcall(function() ffi_cast(ffi_typeof(kind_pointer[sig.kinds[1]]), default)[0] = opts.default end)
    if not ok then error("bad option 'default': " .. tostring(err), 2) end
  end

  local states = opts.states or 1
  if states == "parallel" then states = cpu_count() end
  if type(states) ~= "number" or states < 1 or states ~= math.floor(states) then
    error("bad option 'states': expected a positive integer or 'parallel'", 2)
  end
  local limit = opts.memory_limit or 0
  if type(limit) ~= "number" or limit < 0 then error("bad option 'memory_limit': expected bytes", 2) end
  if limit > 0 and not custom_allocators then
    error("bad option 'memory_limit': not available on this LuaJIT (64-bit LuaJIT without GC64 has no custom allocators)", 2)
  end

  local name = opts.name and tostring(opts.name) or self.ctype
  local parts = scratch_parts
  parts[1], parts[2], parts[3], parts[4], parts[5], parts[6], parts[7] =
    code, "=" .. name, layout.wrapper, layout.types, layout.tags, opts.cdef, on_error
  local ptrs, lens = scratch_ptrs, scratch_lens
  for i = 1, 7 do
    local part = parts[i]
    if part then ptrs[i - 1] = part; lens[i - 1] = #part else ptrs[i - 1] = nil; lens[i - 1] = 0 end
  end
  local h = C.ljasync_callback_new(name, builder_code, #builder_code, 7, ptrs, lens,
    #sig.params, sig.kinds_c, sig.offsets_c, sig.frame_size, default, states, limit, errbuf, errbuf_size)
  for i = 1, 7 do parts[i] = nil end  -- the core copied them
  if h == nil then
    error(("cannot create callback '%s': %s"):format(name, ffi_string(errbuf)), 2)
  end
  ffi.gc(h, C.ljasync_callback_free)
  return setmetatable({ _h = h, _fp = ffi_cast(self._ct, C.ljasync_callback_funcptr(h)), _type = self }, Callback)
end
Type.__call = Type.new

-- What the builder needs about the signature: the spellings of the types in the callback's
-- state, the struct tags to declare there, the wrapper. Computed once per type (and again for
-- callbacks with their own cdef, whose spellings may differ).
function Type:_layout(has_cdef)
  local sig = self._sig
  local spellings = { sig.ret_spelling or "-" }
  local needs_cdef
  for i = 1, #sig.params do
    local sp, needs = portable_spelling(sig.params[i], sig.originals[i], has_cdef, sig.kinds[i + 1])
    spellings[i + 1] = sp
    if needs then needs_cdef = needs_cdef or sig.originals[i] end
  end
  if needs_cdef then
    error(("bad ctype '%s': type '%s' is an anonymous struct or enum; pass its declaration with the 'cdef' option")
      :format(self.ctype, needs_cdef), 3)
  end
  -- Tags named in the spellings exist there at least as incomplete types (enough for pointers).
  local tags = {}
  for _, d in ipairs(sig.tags) do tags[#tags + 1] = d end
  for i = 1, #spellings do
    for kw, tag in spellings[i]:gmatch("(%a+)%s+([%a_][%w_]*)") do
      if (kw == "struct" or kw == "union") and not tag:match("^%d") then tags[#tags + 1] = kw .. " " .. tag end
    end
  end
  local layout = {
    types = table.concat(spellings, "\n"), tags = table.concat(tags, "\n"),
    wrapper = wrapper_source(#sig.params, sig.ret ~= nil),
  }
  if not has_cdef then self._plain_layout = layout end
  return layout
end

function Type:__tostring() return ("lj-async.callback type<%s>"):format(self.ctype) end

local function analyse(ct, level)
  local tags = {}
  local fct, err = resolve(ct, tags)
  if not fct then bad(ct, err, level + 1) end
  local out = ffi.new("char[?]", 4096)
  local n = C.ljasync_ctype_parse(ct, out, 4096)
  if n < 0 then bad(ct, ffi_string(out), level + 1) end
  local parts = {}
  for line in (ffi_string(out) .. "\n"):gmatch("([^\n]*)\n") do parts[#parts + 1] = line end

  local sig = { tags = tags, params = {}, originals = {}, kinds = {} }
  local cts = {}  -- [1] result (nil for void), [i + 1] parameter i
  for i = 1, n + 1 do
    local spelling = parts[i]
    local what = i == 1 and "the result type" or ("parameter %d ('%s')"):format(i - 1, spelling)
    local t, e = resolve(spelling, tags)
    if not t then bad(ct, what .. ": " .. e, level + 1) end
    local kind, why = classify(t)
    if not kind then bad(ct, what .. ": " .. why, level + 1) end
    if kind == K.void and i > 1 then bad(ct, what .. ": void parameter", level + 1) end
    sig.kinds[i] = kind
    if i == 1 then
      if kind ~= K.void then
        sig.ret = t
        local sp = tostring(t):sub(7, -2)
        sig.ret_spelling = sp:match("^enum ") and (kind == K.uint32 and "uint32_t" or "int32_t") or sp
        cts[1] = t
      end
    else
      sig.params[i - 1] = t
      sig.originals[i - 1] = spelling
      cts[i] = t
    end
  end
  -- The frame's C layout, computed here without building a struct type: ffi.typeof
  -- templates that differ only in their `$` arguments have been seen to return one type.
  local offset, maxalign = 0, 1
  sig.kinds_c = ffi.new("uint8_t[?]", n + 1)
  sig.offsets_c = ffi.new("uint32_t[?]", n + 1)
  for i = 1, n + 1 do
    sig.kinds_c[i - 1] = sig.kinds[i]
    local t = cts[i]
    if t then
      local a = ffi.alignof(t)
      offset = math.ceil(offset / a) * a
      sig.offsets_c[i - 1] = offset
      offset = offset + ffi_sizeof(t)
      maxalign = math.max(maxalign, a)
    end
  end
  sig.frame_size = math.max(1, math.ceil(offset / maxalign) * maxalign)
  return fct, sig
end

local types = setmetatable({}, { __mode = "v" })

--- CallbackFactory(ctype_string) -> callback type (the same object for the same string).
local function factory(ct)
  if type(ct) ~= "string" then
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
    local f = assert(io.open(path, "rb"))
    local src = f:read("*a"); f:close()
    core.add_init(src, "@" .. path)
  end,
  --- How many callbacks exist (created, not yet freed or collected).
  live = function() return tonumber(C.ljasync_callback_live()) end,
  --- "libffi" or "stub": the entry a callback's function pointer is (for tests).
  _entry = function(cb) return C.ljasync_callback_uses_libffi(cb._h) == 1 and "libffi" or "stub" end,
  Callback = Callback,
  Type = Type,
}, { __call = function(_, ct) return factory(ct) end })
