"""The machinery the stages share (the stages themselves are the modules of `stages/`).

- Data: `sequences` (CSR user sequences and their leave-one-out split), `idmap` (the users' own ids),
  `item_text` (the items.tsv file and its tensor artifact), `files` (dataset files read as checked UTF-8
  lines, and their sha256), `preference` (a user's histogram over item groups).
- Training: `trainer` (the backbones' loop for `pretrain` and `train`), `linear_ce` (its full-softmax
  loss), `evaluate` (full-ranking metrics), `ensemble` (two models' scores mixed), `checkpoint` (per-epoch
  resume points), `precision` (dtypes and 'auto'), `distributed` (the data-parallel helpers under torchrun).
- `atomic`: files written so that a reader never sees half of one.
"""
