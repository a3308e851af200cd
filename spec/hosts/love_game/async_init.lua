-- Registered with register_async_dofile by its LÖVE path: runs in every worker.
INIT_VALUE = 7
