-- Private: lj-async.sync.channel's batch methods, push_many and pop_many, and their batch of
-- 256 cells (8 KiB), loaded by the channel at the first use of either (sync/channel.lua): a
-- state that only pushes and pops one value at a time never holds them.
local ffi = require "ffi"
local buffer = require "string.buffer"
local C = require("lj-async.core").C  -- the channel section, declared by sync/channel.lua
local check = require "lj-async.sync.check"

local ffi_copy = ffi.copy
local type, error, select = type, error, select
local push_cells, chan_pop = C.ljasync_channel_push_cells, C.ljasync_channel_pop
local T_NIL, T_FALSE, T_TRUE = C.LJASYNC_CELL_NIL, C.LJASYNC_CELL_FALSE, C.LJASYNC_CELL_TRUE  -- ljasync.h
local T_NUMBER, T_SHORT = C.LJASYNC_CELL_NUMBER, C.LJASYNC_CELL_SHORT
local INLINE = 24
local integer, MAX = check.integer, check.MAX  -- the function itself: a stub's vararg would not compile

local BATCH = 256

local M = {}

--- Adds push_many and pop_many to the channel's methods `Channel`; `ch` holds the channel
--- module's own pieces (its one cell, cell_value, push_value, push_status, timeout_arg, freed).
function M.install(Channel, ch)
  local cell_value, push_value, push_status = ch.cell_value, ch.push_value, ch.push_status
  local timeout_arg, freed, dbuf, enter, leave = ch.timeout_arg, ch.freed, ch.dbuf, ch.enter, ch.leave
  local batch_t = ffi.typeof("ljasync_cell[?]")
  local batch = batch_t(BATCH)

  --- Pushes t[i], ..., t[j] in order (default i = 1, j = #t), batching plain values (numbers,
  --- booleans, strings up to 24 bytes) into one call each. Waits as push does, for each
  --- batch. Returns the number pushed (j - i + 1 on success), or that number and "full" or
  --- "closed" when it stopped early.
  function Channel:push_many(t, i, j, timeout)
    local p = self.p
    if p == nil then freed("channel") end
    if type(t) ~= "table" then error("bad argument #1 to 'push_many' (expected a table, got " .. type(t) .. ")", 2) end
    i = i == nil and 1 or integer(i, 1, MAX, "start index", "argument #2 to 'push_many'", 2)
    j = j == nil and #t or integer(j, 0, MAX, "end index", "argument #3 to 'push_many'", 2)
    local tmo = timeout_arg(timeout, 4, "push_many")
    local done = 0
    local k = i
    -- The batch is this state's (see pop_many): a finalizer's push_many inside another
    -- batch call fills one of its own.
    local nested = enter()
    local b = nested and batch_t(BATCH) or batch
    while k <= j do
      -- Fill a batch of plain cells.
      local n = 0
      while k + n <= j and n < BATCH do
        local v = t[k + n]
        local tv = type(v)
        if tv == "number" then
          b[n].tag = T_NUMBER; b[n].n = v
        elseif tv == "boolean" then
          b[n].tag = v and T_TRUE or T_FALSE
        elseif tv == "nil" then
          b[n].tag = T_NIL
        elseif tv == "string" and #v <= INLINE then
          b[n].tag = T_SHORT; b[n].len = #v
          ffi_copy(b[n].s, v, #v)
        else
          break
        end
        n = n + 1
      end
      if n > 0 then
        local off = 0
        while off < n do
          local r = push_cells(p, b + off, n - off, tmo)
          if r < 0 then
            leave(nested)
            if r == -3 then error("internal error: a cell that owns memory reached push_batch", 2) end
            return done, r == -1 and "full" or "closed"
          end
          off = off + r
          done = done + r
        end
        k = k + n
      else
        -- The batch is free here, and push_value may raise (a value that cannot move).
        leave(nested)
        local st = push_value(p, t[k], tmo, 2)
        if st ~= 0 then return done, select(2, push_status(st, 2)) end
        nested = enter()
        if nested and b == batch then b = batch_t(BATCH) end
        done = done + 1
        k = k + 1
      end
    end
    leave(nested)
    return done
  end

  --- Pops up to `max` values (capped at 256) into `out` (a table, reused if given), waiting at most
  --- `timeout` for the first. Returns out, n (out[1..n] set; nils leave holes), or nil,
  --- "timeout" / nil, "closed". A value that took the encoder (a big table, a function, ...)
  --- always comes in a batch of its own.
  function Channel:pop_many(max, timeout, out)
    local p = self.p
    if p == nil then freed("channel") end
    max = integer(max, 1, MAX, "count", "argument #1 to 'pop_many'", 2)
    if max > BATCH then max = BATCH end
    local tmo = timeout_arg(timeout, 2, "pop_many")
    if out ~= nil and type(out) ~= "table" then
      error("bad argument #3 to 'pop_many' (expected a table or nil, got " .. type(out) .. ")", 2)
    end
    -- A finalizer that pops while this batch is read takes a batch and a buffer of its own
    -- (sync/channel.lua, `popping`).
    local nested = enter()
    local b, db = batch, dbuf
    if nested then b, db = batch_t(max), buffer.new() end
    local n = chan_pop(p, b, max, tmo)
    if n < 0 then
      leave(nested)
      return nil, n == -1 and "timeout" or "closed"
    end
    if out == nil then out = {} end
    for k = 0, n - 1 do
      if b[k].tag == T_NUMBER then out[k + 1] = b[k].n else out[k + 1] = cell_value(b + k, db, 2) end
    end
    leave(nested)
    return out, n
  end
end

return M
