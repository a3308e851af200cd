-- A game module only jobs use: the game names it with async.provide.
return { value = 42 }
