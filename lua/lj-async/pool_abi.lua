-- Private: the core's library for the pool modules (the pool's C ABI is in
-- Sources/CLJAsync/include/ljasync.h, declared by lj-async.core).
return require("lj-async.core").C
