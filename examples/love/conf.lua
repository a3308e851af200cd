-- The example's window; no audio (the example makes no sound).
function love.conf(t)
  t.identity = "lj-async-example"
  t.window.title = "lj-async: loading with a worker pool"
  t.window.width, t.window.height = 640, 200
  t.modules.audio, t.modules.sound = false, false
end
