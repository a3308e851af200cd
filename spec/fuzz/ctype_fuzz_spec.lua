-- Fuzz: random C type strings (spec/fuzz/ctype_gen.lua) through LuaJIT's ffi.cast(s, f) and
-- lj-async's CallbackFactory(s)(f). Every disagreement must be one of the two documented
-- extensions (more than 16 parameters, undeclared struct tags); nothing may crash. Batches run
-- in child processes (LuaJIT's C type table fills up, and a crash must name its string).
-- Runs once in CI, not per LuaJIT (CMakeLists.txt registers spec/fuzz/ with the label "fuzz").
local G = dofile("spec/fuzz/ctype_gen.lua")

local BATCHES, PER_BATCH = tonumber(os.getenv("FUZZ_BATCHES")) or 12, 400

describe("ctype fuzz", function()
  it(("agrees with LuaJIT's ffi.cast on %d random ctype strings"):format(BATCHES * PER_BATCH), function()
    local env = ("LJASYNC_CORE=%q LJASYNC_TESTC=%q LUA_PATH=%q"):format(os.getenv("LJASYNC_CORE") or "",
      os.getenv("LJASYNC_TESTC") or "", "./lua/?.lua;./?.lua;" .. (package.path or ""))
    local tried, agreed, extended, problems = 0, 0, 0, {}
    for b = 1, BATCHES do
      local seed = 1000 + b
      local p = io.popen(("%s luajit spec/fuzz/ctype_fuzz_child.lua %d %d 2>/dev/null; echo \"EXIT $?\"")
        :format(env, seed, PER_BATCH))
      local out = p:read("*a")
      p:close()
      local strings = G.strings(seed, PER_BATCH)
      local last, done = 0, nil
      for line in out:gmatch("[^\n]+") do
        local i = line:match("^T (%d+)$")
        if i then last = tonumber(i) end
        local d, rest = line:match("^D (%d+)\t(.*)$")
        if d then problems[#problems + 1] = ("disagreement on %q: %s"):format(strings[tonumber(d)], rest) end
        if line:match("^X ") then extended = extended + 1 end
        done = tonumber(line:match("^DONE (%d+)$")) or done
      end
      if done then
        tried, agreed = tried + PER_BATCH, agreed + done
      else
        problems[#problems + 1] = ("batch %d crashed (%s) on %q"):format(b, out:match("EXIT %d+") or "?",
          tostring(strings[last]))
        tried = tried + last
      end
    end
    print(("\nctype fuzz: %d strings, %d agree with LuaJIT, %d differ by the documented extensions, %d problems")
      :format(tried, agreed, extended, #problems))
    assert.same({}, problems)
  end)
end)
