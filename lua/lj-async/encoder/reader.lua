-- Private: decodes both formats (docs/encoder.md has the layout), from bytes this process made
-- (native messages, decode_ptr) or from elsewhere (strings).
--
-- Bytes from elsewhere may be forged, checksum included, so before string.buffer or LuaJIT's
-- bytecode loader sees them: the core checks their whole structure (Encoder/Validator.swift:
-- bounds, tags, table sizes against the bytes left, nil and NaN keys, depth), a handle table is
-- refused (handle addresses are trusted only in native messages), a function is loaded only if
-- its bytecode carries this process's mark (Encoder/BytecodeMark.swift), modules are not
-- loaded (only ones already loaded are named), and each ctype must be one whose values cross
-- (registry.classify) with the size the bytes claim. The one error left to string.buffer is a
-- duplicate table key, which on a trace can crash LuaJIT releases before 2023-08: bytes that
-- may hold one are decoded by a second copy of these functions that the JIT compiler never
-- records (`offtrace`), so that error is raised in the interpreter.
--
-- The module is built twice from `build`, which has no upvalues so that string.dump can copy it.
-- Every function here runs on the thread that owns the calling Lua state.
local function build()
  local ffi = require "ffi"
  local bit = require "bit"
  local buffer = require "string.buffer"
  local tnew = require "table.new"
  local registry = require "lj-async.encoder.registry"
  local native = require "lj-async.encoder.native"

  local type, tonumber, tostring, error, pcall, format, byte, loadstring, require =
        type, tonumber, tostring, error, pcall, string.format, string.byte, loadstring, require
  local getupvalue, setupvalue, upvaluejoin, setmt = debug.getupvalue, debug.setupvalue, debug.upvaluejoin, setmetatable
  local ffi_typeof, ffi_cast, ffi_sizeof, ffi_copy, ffi_new = ffi.typeof, ffi.cast, ffi.sizeof, ffi.copy, ffi.new
  local band = bit.band
  local checksum, SEED, validate, mark = native.checksum, native.CHECKSUM_SEED, native.validate, native.mark
  local classify, ctype_of = registry.classify, registry.ctype_of
  local mt_by_name, handle_by_kind, loaded = registry.mt_by_name, registry.handle_by_kind, package.loaded
  local T, FIXED, TAG_PLAIN, TAG_GENERAL, HAS_HANDLES = native.T, native.FIXED, native.TAG_PLAIN,
        native.TAG_GENERAL, native.HAS_HANDLES
  local T_LEAF, T_TABLE, T_TABLE_MT, T_END, T_REF, T_FUNC, T_UPJOIN, T_MODULE, T_MODFIELD, T_POINTER,
        T_CVALUE, T_HANDLE = T.LEAF, T.TABLE, T.TABLE_MT, T.END, T.REF, T.FUNC, T.UPJOIN, T.MODULE,
        T.MODFIELD, T.POINTER, T.CVALUE, T.HANDLE

  local u32p, u64p = ffi_typeof("uint32_t *"), ffi_typeof("uint64_t *")
  local atbox = ffi_new("intptr_t[1]")

  local Rd = {}

  -- On a trace, LuaJIT releases before 2022-07 may read a number that buffer:decode() returned
  -- from the decoder's scratch slot only where it is used, after later decodes overwrote it
  -- ("x86/x64: Limit VLOAD fusion to simple cases"). Adding -0 (exact for every number, -0 and
  -- NaN included, and never folded away) makes the read happen at once.
  local NEG_ZERO = -0.0
  local function launder(v)
    if type(v) == "number" then return v + NEG_ZERO end
    return v
  end

  local function malformed(what) error("malformed encoded data: " .. what, 0) end

  -- Validator.Failure codes.
  local failures = { "truncated", "unknown tag", "table size exceeds the data", "table key is nil or NaN",
                     "nested too deep", "bad field", "bad light userdata", "trailing bytes" }

  --- Scratch for one decoding at a time.
  function Rd.new_reader()
    return { buf = buffer.new(), objs = {}, nobj = 0, haddr = {}, nh = 0, elsewhere = false }
  end

  function Rd.reset_reader(R)
    R.buf:reset()
    local objs = R.objs
    for i = 1, R.nobj do objs[i] = nil end
    R.nobj = 0
    for i = 1, R.nh do R.haddr[i] = nil end
    R.nh, R.elsewhere, R.resolve = 0, false, nil
    if #objs > 65536 then R.objs = {} end
  end

  local function get_tag(b)
    local c = b:get(1)
    if c == "" then malformed("truncated") end
    return byte(c)
  end

  -- A count or index: an integer >= 0 (or FIXED, where `fixed_ok`).
  local function get_count(b, what, fixed_ok)
    local n = launder(b:decode())
    if type(n) ~= "number" or n % 1 ~= 0 or n < 0 and not (fixed_ok and n == FIXED) then
      malformed("bad " .. what)
    end
    return n
  end

  local function get_string(b, what)
    local s = b:decode()
    if type(s) ~= "string" then malformed(what .. " is not a string") end
    return s
  end

  local function new_object(R, v)
    local id = R.nobj + 1
    R.nobj, R.objs[id] = id, v
  end

  -- A module named in the bytes: bytes from elsewhere only name modules already loaded here
  -- (they must not make this state load files).
  local function module_named(R, name)
    local resolve = R.resolve  -- decode_resolving: the caller's require (a sandbox's)
    if resolve then return resolve(name) end
    if R.elsewhere then
      local m = loaded[name]
      if m == nil then error(format("module '%s' is not loaded in this state (bytes from elsewhere load no modules)", name), 0) end
      return m
    end
    return require(name)
  end

  local value_of

  local function get_value(R, b)
    return value_of(R, b, get_tag(b))
  end

  local function get_table(R, b, tag)
    local mt
    if tag == T_TABLE_MT then
      local name = get_string(b, "metatable name")
      mt = mt_by_name[name]
      if not mt then
        error("metatable '" .. name .. "' is not registered in this state (encoder.register_portable_metatable)", 0)
      end
    end
    local narr = get_count(b, "array size")
    if narr > #b then malformed("table size exceeds the data") end
    local t = tnew(narr, 0)
    new_object(R, t)
    for i = 1, narr do t[i] = get_value(R, b) end
    while true do
      local ktag = get_tag(b)
      if ktag == T_END then break end
      local k = value_of(R, b, ktag)
      if k == nil or k ~= k then malformed("table key is nil or NaN") end
      t[k] = get_value(R, b)
    end
    if mt then setmt(t, mt) end
    return t
  end

  local function get_function(R, b)
    local code = get_string(b, "function")
    local m = b:decode()
    local nups = get_count(b, "upvalue count")
    if code:sub(1, 3) ~= "\27LJ" then malformed("function is not bytecode") end
    -- LuaJIT does not verify bytecode: from elsewhere, only what this process dumped loads.
    if R.elsewhere and m ~= mark(code, #code) then
      malformed("function bytecode was not encoded by this process")
    end
    local f = loadstring(code)
    -- The upvalue count must be the one written (checked without building a debug.getinfo table).
    if not f or nups > 0 and getupvalue(f, nups) == nil or getupvalue(f, nups + 1) ~= nil then
      malformed("bad function bytecode")
    end
    new_object(R, f)
    for i = 1, nups do
      local tag = get_tag(b)
      if tag == T_UPJOIN then
        local g, j = R.objs[get_count(b, "function reference")], get_count(b, "upvalue index")
        if type(g) ~= "function" or j < 1 or getupvalue(g, j) == nil then malformed("bad upvalue join") end
        upvaluejoin(f, i, g, j)
      elseif tag == T_MODULE then
        setupvalue(f, i, module_named(R, get_string(b, "module name")))
      elseif tag == T_MODFIELD then
        local mname, field = get_string(b, "module name"), get_string(b, "field name")
        local mod = module_named(R, mname)
        local v = type(mod) == "table" and mod[field]
        if type(v) ~= "function" then
          error(format("upvalue '%s.%s' is not a function in this state", mname, field), 0)
        end
        setupvalue(f, i, v)
      else
        setupvalue(f, i, value_of(R, b, tag))
      end
    end
    return f
  end

  local function get_handle(R, b)
    local idx = get_count(b, "handle index")
    local kind, module = get_string(b, "handle kind"), get_string(b, "handle module")
    local addr = R.haddr[idx]
    if not addr then malformed("handle index out of range") end
    local spec = handle_by_kind[kind]
    if not spec then
      require(module)  -- a native message: bytes this process made
      spec = handle_by_kind[kind]
      if not spec then
        error(format("handle kind '%s' is not registered in this state (module '%s' did not register it)", kind, module), 0)
      end
    end
    local h = spec.wrap(addr)
    new_object(R, h)
    return h
  end

  -- The ctype named in the bytes, and how its values cross (registry.classify), which must
  -- be `what`: a forged name must not build a handle, a reference or a function.
  local function crossing_ctype(R, name, what)
    local ct = ctype_of(name, R.elsewhere)
    local c = classify(ct)
    if c.what ~= what and not (what == "value" and c.what == "variable") then
      error(format("ctype '%s' is not a %s type whose values cross", name, what == "pointer" and "pointer" or "value"), 0)
    end
    return ct, c
  end

  local function get_pointer(R, b)
    local name = get_string(b, "ctype name")
    local ct = crossing_ctype(R, name, "pointer")
    local address = b:decode()
    if type(address) ~= "cdata" then malformed("bad pointer") end
    local v = ffi_cast(ct, address)
    new_object(R, v)
    return v
  end

  local function get_cvalue(R, b)
    local name = get_string(b, "ctype name")
    local size, nelem = get_count(b, "size"), get_count(b, "element count", true)
    local ct, c = crossing_ctype(R, name, "value")
    local p, left = b:ref()
    if size > left then malformed("truncated") end
    local v, expect
    if c.what == "value" and nelem == FIXED then
      expect = c.size
      if expect == size then
        local box = c.box
        if box then  -- a scalar: copy into its box, then unbox (a boxed scalar has no address)
          ffi_copy(box, p, size)
          v = ffi_new(ct, box[0])
        else
          v = ffi_new(ct)
          ffi_copy(v, p, size)
        end
      end
    elseif c.what == "variable" and nelem ~= FIXED then
      local ok, s = pcall(ffi_sizeof, ct, nelem)
      expect = ok and s or nil
      if expect == size then
        v = ffi_new(ct, nelem)
        ffi_copy(v, p, size)
      end
    else
      error(format("ctype '%s' is %s in this state, but the value is %s", name,
        c.what == "value" and "of fixed size" or "variable-length",
        nelem == FIXED and "of fixed size" or "variable-length"), 0)
    end
    if not v then
      error(format("ctype '%s' has size %s in this state, but the value has %d bytes", name, tostring(expect), size), 0)
    end
    b:skip(size)
    new_object(R, v)
    return v
  end

  -- The value whose tag was just read.
  value_of = function(R, b, tag)
    if tag == T_LEAF then return launder(b:decode()) end
    if tag == T_TABLE or tag == T_TABLE_MT then return get_table(R, b, tag) end
    if tag == T_REF then
      local v = R.objs[get_count(b, "reference")]
      if v == nil then malformed("reference to an unknown object") end
      return v
    end
    if tag == T_FUNC then return get_function(R, b) end
    if tag == T_CVALUE then return get_cvalue(R, b) end
    if tag == T_POINTER then return get_pointer(R, b) end
    if tag == T_HANDLE then return get_handle(R, b) end
    malformed(format("unexpected tag 0x%02x", tag))
  end

  -- The general format in len bytes at p (checked already): the count and a table of the values.
  local function decode_general(R, p, len)
    local off, nh = 1, 0
    if band(p[0], HAS_HANDLES) ~= 0 then
      nh = ffi_cast(u32p, p + 1)[0]
      off = 5 + 8 * nh
      local a = ffi_cast(u64p, p + 5)
      for i = 1, nh do
        local addr = tonumber(a[i - 1])
        if addr == 0 or addr >= 2 ^ 53 then malformed("bad handle address") end
        R.haddr[i] = addr
      end
      R.nh = nh
    end
    local b = R.buf
    b:set(p + off, len - off - 4)
    local n = get_count(b, "value count")
    if n > len then malformed("value count exceeds the data") end
    local vals = tnew(n, 0)
    for i = 1, n do vals[i] = get_value(R, b) end
    if #b ~= 0 then malformed("trailing bytes") end
    return n, vals
  end

  -- The header of the encoding set in b: checks the tag, length and checksum; returns the
  -- tag, the plain format's value count and header length (nil for the general format).
  local function header(b)
    local p, len = b:ref()
    if len < 6 then malformed("truncated") end
    local tag = p[0]
    if tag ~= TAG_PLAIN and tag ~= TAG_GENERAL and tag ~= TAG_GENERAL + HAS_HANDLES then
      malformed(format("unknown format tag 0x%02x", tag))
    end
    if ffi_cast(u32p, p + len - 4)[0] ~= checksum(p + 1, len - 5, SEED) then
      malformed("checksum mismatch")
    end
    if tag == TAG_PLAIN then
      local n, hdr = p[1], 2
      if n == 255 then
        if len < 10 then malformed("truncated") end
        n, hdr = ffi_cast(u32p, p + 2)[0], 6
      end
      if n > len then malformed("value count exceeds the data") end
      return tag, n, hdr
    end
    if tag ~= TAG_GENERAL then
      local nh = ffi_cast(u32p, p + 1)[0]
      if len < 10 or nh > (len - 10) / 8 then malformed("truncated handle table") end
    end
    return tag
  end

  --- Checks bytes from elsewhere set in b before anything decodes them: -1 when they may hold
  --- a duplicate table key (decode them with Rd.offtrace), 0 otherwise; raises on the rest.
  function Rd.check(b)
    local p, len = b:ref()
    local tag, n, hdr = header(b)
    if tag == TAG_GENERAL + HAS_HANDLES then
      malformed("a handle table in bytes from elsewhere (handles cross in native messages only)")
    end
    local st
    if tag == TAG_PLAIN then
      st = validate(p + hdr, len - hdr - 4, n, atbox)
    else
      st = validate(p + 1, len - 5, -1, atbox)
    end
    if st > 0 then malformed(format("%s at byte %d", failures[st] or "?", tonumber(atbox[0]) + (hdr or 1))) end
    return st
  end

  --- Decodes the bytes set in b (checked by Rd.check when `elsewhere`): returns the count and
  --- up to three values, and a table of them when there are more (or in the general format).
  function Rd.decode(b, R, elsewhere)
    local tag, n, hdr
    if elsewhere then
      R.elsewhere = true
      local p = b:ref()
      tag = p[0]
      if tag == TAG_PLAIN then
        n, hdr = p[1], 2
        if n == 255 then n, hdr = ffi_cast(u32p, p + 2)[0], 6 end
      end
    else
      tag, n, hdr = header(b)
    end
    if tag ~= TAG_PLAIN then
      local p, len = b:ref()
      local count, vals = decode_general(R, p, len)
      return count, vals[1], vals[2], vals[3], vals
    end
    b:skip(hdr)
    -- Each number is laundered as it is decoded; values stored into a table need not be.
    local a, c, d, vals
    if n == 1 then
      a = launder(b:decode())
    elseif n == 2 then
      a = launder(b:decode()); c = launder(b:decode())
    elseif n == 3 then
      a = launder(b:decode()); c = launder(b:decode()); d = launder(b:decode())
    elseif n > 3 then
      vals = tnew(n, 0)
      for i = 1, n do vals[i] = b:decode() end
      a, c, d = vals[1], vals[2], vals[3]
    end
    if #b ~= 4 then malformed("trailing bytes") end  -- only the checksum is left
    return n, a, c, d, vals
  end

  return Rd
end

local ontrace = build()
-- A copy with prototypes of its own (string.dump keeps no upvalues: build has none), which the
-- JIT compiler is told never to record (recursively: every function built inside): a trace
-- that calls into it aborts ("JIT compilation disabled for function"). A host that took
-- string.dump or loadstring away gets the one build for both.
local ok, copy = pcall(function() return loadstring(string.dump(build)) end)
if ok and copy then
  -- loadstring gives the copy the running thread's globals; it needs this module's (a host
  -- such as Luanti's mod loader gives lj-async's chunks globals of their own).
  setfenv(copy, getfenv(build))
  require("jit").off(copy, true)
  ontrace.offtrace = copy()
else
  ontrace.offtrace = ontrace
end
return ontrace
