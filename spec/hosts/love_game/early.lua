-- A game module the game requires before lj-async: jobs find it too.
return { name = "early" }
