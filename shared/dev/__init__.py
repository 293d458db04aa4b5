"""Development-only helpers: embedded infrastructure for local runs and tests."""
