-- Private: lj-async.sync's channel, a multi-producer multi-consumer FIFO of copied values.
-- Plain values (numbers, booleans, nil, strings) move as native cells, and so do small plain
-- tables, as string.buffer's encoding of the table (encoder.encode_small_table); the rest as
-- encoder messages.
local ffi = require "ffi"
local buffer = require "string.buffer"
local core = require "lj-async.core"
core.declare "channel"  -- the header's channel section alone (not sync.abi's objects)
local C = core.C
local handle = require "lj-async.sync.handle"

local ffi_string, ffi_copy = ffi.string, ffi.copy
local type, tonumber, tostring, error, pcall, select = type, tonumber, tostring, error, pcall, select
local timeout_arg, freed = core.timeout, handle.freed
-- lj-async.sync.check, loaded by the first call that checks more than a timeout: sync.channel()
-- and the batch methods (sync/channel_batch.lua); push and pop never do.
local function check() return require "lj-async.sync.check" end

-- Hot functions as upvalues: the JIT then calls them directly.
local push_number, push_simple, push_string = C.ljasync_channel_push_number, C.ljasync_channel_push_simple,
  C.ljasync_channel_push_string
local push_message, push_cells, chan_pop = C.ljasync_channel_push_message, C.ljasync_channel_push_cells,
  C.ljasync_channel_pop
local push_encoded = C.ljasync_channel_push_encoded
local bytes_free, message_free = C.ljasync_channel_bytes_free, C.ljasync_message_free
-- lj-async.encoder, required the first time a value needs it: a state that only moves numbers
-- and strings (a thread popping a channel) never loads it. Each stub replaces itself.
local encode_message, decode_message, encode_small
local function encoder()
  local e = require "lj-async.encoder"
  encode_message, decode_message, encode_small = e.encode_message, e.decode_message, e.encode_small_table
  return e
end
encode_message = function(...) return encoder().encode_message(...) end
decode_message = function(m) return encoder().decode_message(m) end
encode_small = function(b, v) return encoder().encode_small_table(b, v) end

-- Tags of ljasync_cell, as Sources/LJAsync/Sync/ChannelCell.swift numbers them.
local T_NIL, T_FALSE, T_TRUE = C.LJASYNC_CELL_NIL, C.LJASYNC_CELL_FALSE, C.LJASYNC_CELL_TRUE  -- ljasync.h
local T_NUMBER, T_SHORT, T_HEAP = C.LJASYNC_CELL_NUMBER, C.LJASYNC_CELL_SHORT, C.LJASYNC_CELL_HEAP
local T_ENC_SHORT, T_ENC_HEAP = C.LJASYNC_CELL_ENCODED_SHORT, C.LJASYNC_CELL_ENCODED_HEAP  -- a small plain table's bytes
local INLINE = 24

-- Scratch, allocated once per state (a state runs one Lua thread at a time).
-- One cell: push_many and pop_many (sync/channel_batch.lua) have their own batch of 256.
-- A finalizer can run at any allocation, the cdata that reading a cell's field makes in the
-- interpreter included (ffi's __index takes a GC step): one that pops while a pop of this
-- state is still reading the cell or decoding from dbuf takes a cell and a buffer of its own,
-- or both would read, and free, one value ("double free or corruption"). `popping` is set
-- from the core's pop until the value is made, and while push_many or pop_many use their
-- batch. (Should decoding raise out of memory where no pcall is, it stays set: pops then take
-- their own cells, slower but still exact.)
local cells = ffi.new("ljasync_cell[1]")
local cell1_t = ffi.typeof("ljasync_cell[1]")
local popping = false
-- The bytes of a small table being pushed, and of one being popped (set to the cell's bytes,
-- read in place). `pushing` guards ebuf against a finalizer that pushes while it is in use
-- (buf:encode() may run one): that push takes the encoder instead. (Should encoding ever raise,
-- out of memory, it stays set: tables then take the encoder, slower but still exact.)
local ebuf, dbuf = buffer.new(), buffer.new()
local pushing = false

-- Called before a slow path (the encoder). It is a builtin the JIT does not compile, so a
-- trace reaching it ends cleanly (stitches) instead of recording into the encoder: aborts
-- there would count against the hot function the trace started in (Channel:push or :pop)
-- and blacklist it, leaving even numbers interpreted in that state from then on.
local trace_barrier = coroutine.running

local Channel = {}

-- Raises msg at `level` above cell_value (its caller's caller counts from cell_value), ending
-- the outer pop first when db is the shared buffer.
local function cell_error(db, msg, level)
  if db == dbuf then popping = false end
  error(msg, level + 2)
end

-- The value in c[0] (not a number: callers handle those inline), decoding through db (dbuf
-- when c is `cells`: an error then ends the pop, see `popping`). Takes ownership of what the
-- cell holds, freeing it even when decoding fails.
local function cell_value(c, db, level)
  local tag = c[0].tag
  if tag == T_ENC_HEAP then
    -- Bytes this process's channel wrote (string.buffer's, of a plain table): decoding them
    -- can fail only for memory, and they are freed even then.
    local p = c[0].h.p
    db:set(p, c[0].h.size)
    local ok, v = pcall(db.decode, db)
    db:reset()
    bytes_free(p)
    if not ok then cell_error(db, "cannot decode a channel value: " .. tostring(v), level) end
    return v
  end
  if tag == T_ENC_SHORT then
    db:set(c[0].s, c[0].len)
    local v = db:decode()
    db:reset()
    return v
  end
  if tag == T_SHORT then
    local s = ffi_string(c[0].s, c[0].len)
    return s
  end
  if tag == T_TRUE then return true end
  if tag == T_FALSE then return false end
  if tag == T_NIL then return nil end
  if tag == T_NUMBER then return c[0].n end
  if tag == T_HEAP then
    local p = c[0].h.p
    local ok, s = pcall(ffi_string, p, c[0].h.size)
    bytes_free(p)
    if not ok then cell_error(db, s, level) end
    return s
  end
  local m = c[0].m
  trace_barrier()
  local ok, v = pcall(decode_message, m)
  message_free(m)
  if not ok then cell_error(db, "cannot decode a channel value: " .. tostring(v), level) end
  return v
end

-- A pop from a finalizer that ran inside another pop of this state: a cell and a buffer of
-- its own (see `popping`). Rare, so not compiled for.
local function nested_pop(p, t, level)
  local c = cell1_t()
  local n = chan_pop(p, c, 1, t)
  if n < 0 then return nil, n == -1 and "timeout" or "closed" end
  local v = cell_value(c, buffer.new(), level + 1)
  return v
end

-- pop and try_pop, which tail-call it (errors name their caller): the value of one cell.
local function pop_one(p, t)
  if popping then return nested_pop(p, t, 2) end
  popping = true
  local n = chan_pop(p, cells, 1, t)
  if n < 0 then
    popping = false
    return nil, n == -1 and "timeout" or "closed"
  end
  local v
  if cells[0].tag == T_NUMBER then v = cells[0].n else v = cell_value(cells, dbuf, 2) end
  popping = false
  return v
end

local function push_status(st, level)
  if st == 0 then return true end
  if st == 1 then return false, "full" end
  if st == 2 then return false, "closed" end
  error("out of memory copying a value into the channel", level + 1)
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
  elseif tv == "table" and not pushing then
    pushing = true
    if encode_small(ebuf, v) then
      local q, len = ebuf:ref()
      st = push_encoded(p, q, len, t)
      if len > 65536 then ebuf:free() end  -- keep no big scratch after a table of long strings
    end
    pushing = false
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
--- deadline), or false, "closed". Numbers, booleans, nil, strings and small plain tables
--- take a fast path; anything else is copied by lj-async.encoder (which raises for what
--- cannot move).
function Channel:push(v, timeout)
  local p = self.p
  if p == nil then freed("channel") end
  local st = push_value(p, v, timeout_arg(timeout, 2, "push"), 2)
  if st == 0 then return true end
  return push_status(st, 2)
end

--- Pops the oldest value, waiting at most `timeout` seconds (nil = forever, 0 = try once).
--- Returns the value, or nil, "timeout", or nil, "closed" once the channel is closed and
--- drained. A nil that was pushed pops as a single nil (no second result).
function Channel:pop(timeout)
  local p = self.p
  if p == nil then freed("channel") end
  return pop_one(p, timeout_arg(timeout, 1, "pop"))  -- a Lua tail call: pop_one's levels are pop's
end

--- Pops without waiting: the value, or nil, "timeout" (empty), or nil, "closed".
function Channel:try_pop()
  local p = self.p
  if p == nil then freed("channel") end
  return pop_one(p, 0)
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

-- push_many and pop_many live in lj-async.sync.channel_batch with their batch of cells (8 KiB),
-- loaded at the first use of either: a state that only pushes and pops never loads them.
setmetatable(Channel, { __index = function(t, k)
  if k ~= "push_many" and k ~= "pop_many" then return nil end
  require("lj-async.sync.channel_batch").install(t, {
    cell_value = cell_value, push_value = push_value, push_status = push_status,
    timeout_arg = timeout_arg, freed = freed, dbuf = dbuf,
    -- pop_many's part in `popping`: enter() says whether a pop is already under way (then it
    -- takes its own batch and buffer), leave(was) restores what enter found.
    enter = function() local was = popping; popping = true; return was end,
    leave = function(was) popping = was end,
  })
  return rawget(t, k)
end })

local ct, adopt = handle.kind("channel", "channel", Channel, nil, { __len = function(h) return h:length() end })

local M = { ctype = ct, methods = Channel }

--- Private (lj-async.light_channel): the value of a cell a light spawn's handle popped
--- (Sources/CLJAsyncLua/light_channel.c), taking what it owns (the cell is left empty).
function M.take_cell(p)
  if popping then  -- a finalizer's, inside another pop: a cell and a buffer of its own
    local c = cell1_t()
    ffi_copy(c, p, ffi.sizeof(c))
    p.tag = T_NIL
    local v = cell_value(c, buffer.new(), 2)
    return v
  end
  popping = true
  ffi_copy(cells, p, ffi.sizeof(cells))
  p.tag = T_NIL
  local v = cell_value(cells, dbuf, 2)
  popping = false
  return v
end

--- sync.channel([capacity]) or sync.channel{capacity = n}: a channel holding at most
--- `capacity` values (nil = unbounded).
function M.new(arg)
  return adopt(C.ljasync_channel_new(check().integer_option(arg, "capacity", "channel", 1, 0, 2)))
end

return M
