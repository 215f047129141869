"""JSON Schema → GBNF: the compiler, its helpers and the keyword report."""
