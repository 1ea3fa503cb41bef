"""SING and everything torch: configs, the networks, checkpoints, the note source.

The package is where torch lives for playing. Three of its modules are torch-free, so
that `play`'s audio process can name a checkpoint without importing torch: `files`
(`open_source`, the lazy source), `header` (checkpoint names, hashes, headers) and
`config`; the others import it (`tests/test_layers.py` checks the rule). Import from the
modules themselves: `singsynth.model.sing.SING`, `singsynth.model.checkpoint.load_model`.
"""
