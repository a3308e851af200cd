-- Private: the core's library for the pool modules, with the header's pool section declared
-- (Sources/CLJAsync/include/ljasync.h).
local core = require "lj-async.core"
core.declare "pool"
return core.C
