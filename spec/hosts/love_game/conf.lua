-- Headless: no window, graphics, audio or input (spec/hosts/love_test.sh runs it without a display).
function love.conf(t)
  t.identity = "ljasync_love_test"   -- the save directory's name (the test puts a core there)
  t.window = false
  for _, m in ipairs { "window", "graphics", "audio", "sound", "image", "font", "video",
                       "joystick", "keyboard", "mouse", "touch", "physics" } do
    t.modules[m] = false
  end
end
