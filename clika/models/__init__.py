"""Models under test: loading (tiny default, GGUF, hub ids, local dirs, adapters) and the embedded tiny model."""
