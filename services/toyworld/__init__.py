"""The toy world: a deterministic generator of simple captioned pictures and a judge that reads them back, so tests
and the demo can show that training learns without downloading any model (see `world` and `judge`)."""
