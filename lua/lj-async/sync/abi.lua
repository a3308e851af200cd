-- Private: the core's library for the sync/ modules, with the header's sync section declared
-- (Sources/CLJAsync/include/ljasync.h).
local core = require "lj-async.core"
core.declare "sync"
return core.C
