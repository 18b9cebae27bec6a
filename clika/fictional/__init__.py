"""The fictional-knowledge stream of CLiKA (the Conductivity level).

Protocol (Gao et al., NAACL 2024): fine-tune on train/<X>; the run counts only if Translate(X), EN type 0,
EN type 1 and X type 0 pass the gate; then X type 1 (facts taught only in English) measures how much
knowledge *conducts* from English to X.

One concern per module: `names` (spelling invented names in ten languages), `texts` (sentences), `world`
(the generated world), `records` (training / test / corpus records), `layout` (the official files),
`release` (defects of a release), `generated` (the one world config and cache key shared by training
corpora and probes), `metrics` (gate, XRR), `task` (the fictional stream as an evaluation task),
`tokenization` and `report`.
"""
