-- Registered with lj_async.register_async_dofile: runs in this mod's job environment in every worker.
function lj_async_test_square(x) return x * x end
lj_async_test_file_io = type(io)
