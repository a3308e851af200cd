-- Random C type strings for the ctype fuzz spec: mostly function pointer types as headers write
-- them, with qualifiers anywhere, typedefs, nested declarators, arrays, long parameter lists,
-- and some broken spellings. Deterministic for a seed (LuaJIT's math.random).
local G = {}

-- Declarations the child state makes first; `struct fz_undecl*`/`union fz_uu*` stay undeclared.
G.cdef = [[
struct fz_s { int a; }; union fz_u { int a; float b; };
enum fz_e { FZ_A, FZ_B = 5 }; enum fz_big { FZ_BIG = 3000000000u };
typedef int fz_int; typedef int *fz_iptr; typedef const char *fz_str;
typedef int fz_fn(int, double); typedef void (*fz_fnp)(void *, int);
typedef int fz_arr4[4]; typedef struct { int x; } fz_anon; typedef enum { FZ_X, FZ_Y } fz_anon_e;
typedef struct fz_s fz_s_t; typedef struct fz_later fz_later_t;
typedef struct { long b[8]; } fz_jmp[1];
]]

local bases = {
  "void", "int", "unsigned", "unsigned int", "signed", "char", "signed char", "unsigned char", "short",
  "unsigned short", "long", "unsigned long", "long long", "unsigned long long", "float", "double",
  "long double", "bool", "_Bool", "int8_t", "uint8_t", "int16_t", "uint16_t", "int32_t", "uint32_t",
  "int64_t", "uint64_t", "size_t", "ssize_t", "intptr_t", "uintptr_t", "ptrdiff_t", "wchar_t",
  "complex double", "complex float", "struct fz_s", "union fz_u", "enum fz_e", "enum fz_big",
  "struct fz_undecl", "union fz_uu", "enum fz_nope", "fz_int", "fz_iptr", "fz_str", "fz_fn", "fz_fnp",
  "fz_arr4", "fz_anon", "fz_anon_e", "fz_s_t", "fz_later_t", "fz_jmp", "va_list", "no_such_t",
}
local quals = { "const", "volatile", "const volatile" }

local random = math.random
local function pick(t) return t[random(#t)] end
local function maybe(p) return random() < p end

local function qual() return maybe(0.15) and pick(quals) .. " " or "" end

local function paren(inner)
  return inner:sub(1, 1) == "*" and "(" .. inner .. ")" or inner
end

local gen_type
local function params(depth)
  local r = random()
  if r < 0.08 then return "" elseif r < 0.15 then return "void" end
  local n = random() < 0.9 and random(0, 6) or random(7, 24)
  local out = {}
  for i = 1, n do
    out[i] = gen_type(depth + 1, maybe(0.2) and ("p" .. i) or "")
  end
  if n > 0 and maybe(0.05) then out[#out + 1] = "..." end
  return table.concat(out, ", ")
end

-- A declaration of `inner` (a declarator, possibly empty).
function gen_type(depth, inner)
  local r = random()
  if depth > 4 or r < 0.55 then
    local b = pick(bases)
    local s = maybe(0.5) and qual() .. b or b .. (maybe(0.1) and " const" or "")
    return inner ~= "" and s .. " " .. inner or s
  elseif r < 0.8 then
    return gen_type(depth + 1, "*" .. (maybe(0.1) and pick(quals) .. " " or "") .. inner)
  elseif r < 0.88 then
    return gen_type(depth + 1, paren(inner) .. "[" .. (maybe(0.8) and tostring(random(1, 8)) or "") .. "]")
  else
    return gen_type(depth + 1, paren(inner) .. "(" .. params(depth) .. ")")
  end
end

local function mangle(s)
  local r = random(4)
  local i = random(#s)
  if r == 1 then return s:sub(1, i - 1) .. s:sub(i + 1) end
  if r == 2 then return s:sub(1, i) .. pick({ "(", ")", ",", "*", "[", "]", " int", " x" }) .. s:sub(i + 1) end
  if r == 3 then return s .. pick({ ")", ";", " x", "(" }) end
  return s:sub(1, i)
end

--- The i-th string of the stream for `seed`.
function G.strings(seed, count)
  math.randomseed(seed)
  local out = {}
  for i = 1, count do
    local r = random()
    local s
    if r < 0.75 then
      s = gen_type(1, "(*" .. (maybe(0.05) and "const" or "") .. ")(" .. params(1) .. ")")
    elseif r < 0.82 then
      s = pick({ "fz_fnp", "fz_fn *", "const fz_fnp", "fz_fn", "fz_fn **", "volatile fz_fnp" })
    elseif r < 0.9 then
      s = gen_type(0, "")
    else
      s = mangle(gen_type(1, "(*)(" .. params(1) .. ")"))
    end
    out[i] = s
  end
  return out
end

return G
