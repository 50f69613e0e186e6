"""Foreign formats, each one adapter: the SeiT token release, SeiT / enhancing-transformers checkpoints,
and the allow-listed unpickler for legacy pickled modules."""
