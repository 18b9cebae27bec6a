"""The Lightning side of CLiKA: module (full / LoRA), data, strategies, callbacks and `train(cfg)`.

Note: the root `train.py` entry point is shadowed by this package for `import train`; nothing imports it.
"""
