-- Runs a program in a child luajit, bounded in time: the helper of the specs whose cases may
-- crash or hang the interpreter (misuse_spec, readme_spec). The child is the running LuaJIT
-- (busted --lua=...), so a spec run under another LuaJIT checks that one.
local ffi = require "ffi"

pcall(ffi.cdef, "long readlink(const char *path, char *buf, size_t len);") -- once per process

local C = {}

--- The running interpreter's path ("luajit" when /proc cannot say).
local function interpreter()
  local buf = ffi.new("char[4096]")
  local n = tonumber(ffi.C.readlink("/proc/self/exe", buf, 4096))
  return n > 0 and ffi.string(buf, n) or "luajit"
end
C.LUAJIT = interpreter()

function C.shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local q = C.shell_quote

--- The repo's root, absolute: found from this file's path (spec/support/child.lua).
do
  local p = io.popen("pwd")
  local cwd = p:read("*l")
  p:close()
  local src = debug.getinfo(1, "S").source:match("^@(.-)/?spec/support/child%.lua$")
  if src == nil or src == "" or src == "." or src == "./" then C.root = cwd
  elseif src:sub(1, 1) == "/" then C.root = src
  else C.root = cwd .. "/" .. src end
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

--- Runs `luajit args` (a shell word list, quoted by the caller) in folder `dir` with LUA_PATH
--- `lua_path`, killed after `timeout` seconds (status 124). Returns the exit status (a number;
--- 128 + n when a signal n ended it), stdout and stderr.
function C.run(dir, lua_path, timeout, args)
  local out, err = os.tmpname(), os.tmpname()
  local cmd = ("cd %s && LUA_PATH=%s timeout -k 5 %d %s %s >%s 2>%s; echo $?"):format(
    q(dir), q(lua_path), timeout, q(C.LUAJIT), args, q(out), q(err))
  local p = io.popen(cmd)
  local status = tonumber(p:read("*a"):match("%d+"))
  p:close()
  local stdout, stderr = read_file(out), read_file(err)
  os.remove(out)
  os.remove(err)
  return status, stdout, stderr
end

return C
