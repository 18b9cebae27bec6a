"""Evaluate a model on the CLiKA suite: `python eval.py model=<preset> [task=<command>]` (README.md)."""
from clika.app.eval import main

main()
