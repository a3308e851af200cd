-- Private: the core's library for the pool modules, with the header's pool sections declared
-- (Sources/CLJAsync/include/ljasync.h).
local core = require "lj-async.core"
core.declare "pool"
core.declare "pool_worker"
return core.C
