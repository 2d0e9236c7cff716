"""Training: the LightningModule (`module`), its callbacks, and the Trainer factory (`trainer`).

Import those modules directly; this package imports nothing eagerly, because Lightning takes seconds
to import and the feature extraction used by linear probes does not need it.
"""
