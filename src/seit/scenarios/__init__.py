"""Scenarios of the SeiT paper beyond classification from tokens, each a Python API with a `seit scenario` command."""
