"""Train a model with CLiKA curves: `python train.py [experiment=...] [key=value ...]` (README.md)."""
from clika.app.train import main

main()
