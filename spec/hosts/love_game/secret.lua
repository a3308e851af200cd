-- A game module nobody provides: a job requiring it must fail with the hint.
return { never = true }
