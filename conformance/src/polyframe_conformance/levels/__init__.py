"""The test modules of the built-in conformance levels (one module per level)."""
