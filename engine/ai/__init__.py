"""AI helpers: offline intent classifier, workout plan generator, reply providers (ask_ai)."""
