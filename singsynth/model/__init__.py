"""SING and everything torch: configs, the networks, checkpoints, the note source.

The package is where torch lives for playing. Two of its modules are torch-free: `files`
(checkpoint names, headers, `open_source`) and `config`, so that `play`'s audio process
can name a checkpoint without importing torch; the others import it
(`tests/test_layers.py` checks the rule). Import from the modules themselves:
`singsynth.model.sing.SING`, `singsynth.model.checkpoint.load_model`.
"""
