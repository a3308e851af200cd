-- Every Lua code block of README.md and docs/*.md runs as written, each in a child luajit.
--
-- Conventions for the Markdown files (the only ones this spec knows):
-- - A fence whose info string starts with `lua` (```lua) is a Lua block: it is run on its own,
--   as a complete program, in a fresh `luajit` process (a crash or a hang is a failure), from
--   an empty temporary directory, with this repo's lua/ on LUA_PATH and the environment that
--   ctest/busted has (LJASYNC_CORE, LJASYNC_TESTC). It must exit with status 0.
-- - `<!-- fragment -->` (or `<!-- fragment: why -->`) on the line right before the fence marks a
--   block that is not a program (a declaration shown for its shape); it is listed, not run.
--   Fragments should be few: MAX_FRAGMENTS caps them.
-- - `--> text` in a block (at the end of a line, or alone on one): the block prints the line
--   `text` on stdout (a whole line; runs of whitespace compare as one space, so print's tabs
--   match spaces). Every such line must be printed, in any order. The text runs to the end of
--   the line: explanations go on lines of their own.
-- - `--2> text`: the same for stderr. A block without `--2>` lines must write nothing on stderr
--   (an error report or a warning there means the example shows something broken).
-- - Other fences (```sh, plain ```) are not run.
local ffi = require "ffi"

local MAX_FRAGMENTS = 4
local TIMEOUT = 60 -- seconds per block; blocks typically take well under one

local child = require "spec.support.child"
local shell_quote = child.shell_quote

local function read_all(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function write_all(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local root = child.root
local LUA_PATH = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;"

--- The Lua blocks of Markdown `text` (file `rel`, read when text is nil):
--- {file, line (of the opening fence), code, fragment}.
local function extract(rel, text)
  local blocks, lines = {}, {}
  text = text or read_all(root .. "/" .. rel)
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  local i = 1
  while i <= #lines do
    local indent, fence, info = lines[i]:match("^(%s*)(```+)%s*(%S*)")
    if fence then
      local body, j = {}, i + 1
      while j <= #lines and not lines[j]:match("^%s*" .. fence .. "%s*$") do
        body[#body + 1] = lines[j]:sub(1, #indent) == indent and lines[j]:sub(#indent + 1) or lines[j]
        j = j + 1
      end
      if info:match("^lua") then
        blocks[#blocks + 1] = {
          file = rel, line = i, code = table.concat(body, "\n") .. "\n",
          fragment = i > 1 and lines[i - 1]:match("^%s*<!%-%-%s*fragment[%s:%-]") ~= nil,
        }
      end
      i = j + 1
    else
      i = i + 1
    end
  end
  return blocks
end

local function normalize(s) return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")) end

--- What the block says it prints: the text after `-->` (stdout) and `--2>` (stderr).
local function expectations(code)
  local out, err = {}, {}
  for l in code:gmatch("[^\n]+") do
    local e = l:match("%-%-2>(.*)$")
    if e then err[#err + 1] = normalize(e)
    else
      e = l:match("%-%->(.*)$")
      if e then out[#out + 1] = normalize(e) end
    end
  end
  return out, err
end

--- Runs `code` as a program in a child luajit; returns exit status, stdout, stderr.
local function run(code, timeout)
  local p = io.popen("mktemp -d")
  local dir = p:read("*l")
  p:close()
  write_all(dir .. "/block.lua", code)
  local status, out, err = child.run(dir, LUA_PATH, timeout or TIMEOUT, "block.lua")
  os.execute("rm -rf " .. shell_quote(dir))
  return status, out, err
end

--- nil when the block ran as it says, else why not (with its stdout and stderr).
local function check(code, timeout)
  local status, out, err = run(code, timeout)
  local want_out, want_err = expectations(code)
  local problems = {}
  if status ~= 0 then
    problems[#problems + 1] = status == 124 and ("timed out after " .. (timeout or TIMEOUT) .. " s")
      or status > 128 and ("killed by signal " .. (status - 128)) or ("exit status " .. status)
  end
  for _, want in ipairs { { "stdout", want_out, out }, { "stderr", want_err, err } } do
    local got = {}
    for l in want[3]:gmatch("[^\n]+") do got[normalize(l)] = true end
    for _, w in ipairs(want[2]) do
      if not got[w] then problems[#problems + 1] = want[1] .. " lacks the line '" .. w .. "'" end
    end
  end
  if #want_err == 0 and err ~= "" then problems[#problems + 1] = "wrote on stderr" end
  if #problems == 0 then return nil end
  return table.concat(problems, "; ") .. "\n--- stdout:\n" .. out .. "--- stderr:\n" .. err
end

local files = { "README.md" }
do
  local p = io.popen("cd " .. shell_quote(root) .. " && ls docs/*.md 2>/dev/null")
  for f in p:lines() do files[#files + 1] = f end
  p:close()
end

local all, fragments = {}, {}
for _, f in ipairs(files) do
  for _, b in ipairs(extract(f)) do
    all[#all + 1] = b
    if b.fragment then fragments[#fragments + 1] = b.file .. ":" .. b.line end
  end
end

describe("README and docs code blocks", function()
  it("are found (README.md and docs/*.md), and fragments are few", function()
    local in_readme = 0
    for _, b in ipairs(all) do if b.file == "README.md" then in_readme = in_readme + 1 end end
    assert.is_true(in_readme >= 4, "the README's Lua blocks were not found")
    assert.is_true(#files > 1, "docs/*.md not found")
    assert.is_true(#fragments <= MAX_FRAGMENTS,
      #fragments .. " fragments (at most " .. MAX_FRAGMENTS .. "): " .. table.concat(fragments, ", "))
  end)

  for _, b in ipairs(all) do
    if b.fragment then
      pending(b.file .. ":" .. b.line .. " (marked fragment)")
    else
      it(b.file .. ":" .. b.line .. " runs as written", function()
        local why = check(b.code)
        if why then error(b.file .. ":" .. b.line .. ": " .. why, 0) end
      end)
    end
  end
end)

describe("the block checker", function()
  it("fails a block that errors, crashes, hangs or does not print what it says", function()
    assert.is_nil(check('print("a  b", 1)  --> a b 1\n'))
    assert.matches("exit status 1", check('error("boom")\n'))
    assert.matches("killed by signal", check('local ffi = require "ffi"; ffi.cast("int *", 0)[0] = 1\n'))
    assert.matches("timed out", check("while true do end\n", 1))
    assert.matches("stdout lacks the line '7'", check("print(6)  --> 7\n"))
    assert.matches("stdout lacks the line '1'", check("print(12)  --> 1\n"))
    assert.matches("wrote on stderr", check('io.stderr:write("warning\\n")\n'))
    assert.is_nil(check('io.stderr:write("a warning\\n")  --2> a warning\n'))
    assert.is_nil(check('assert(require("lj-async.callback"))\n'))
  end)

  it("extracts blocks with their lines, indentation and fragment marks", function()
    local text = table.concat({
      "# t", "```lua", "print(1)", "```", "  - item", "", "  ```lua", "  local x = 1", "  ```",
      "<!-- fragment: a shape -->", "```lua", "f(...)", "```", "```sh", "echo no", "```",
      "<!-- fragment -->", "```", "plain", "```", "```lua", "", "```" }, "\n")
    assert.same({
      { file = "x.md", line = 2, code = "print(1)\n", fragment = false },
      { file = "x.md", line = 7, code = "local x = 1\n", fragment = false },
      { file = "x.md", line = 11, code = "f(...)\n", fragment = true },
      { file = "x.md", line = 21, code = "\n", fragment = false },
    }, extract("x.md", text))
  end)
end)
