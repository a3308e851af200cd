-- Registered with lj-async.callback's add_init_file by its LÖVE path: runs in every new state.
THREAD_INIT = 5
