"""Helpers for tests of the command line."""

import argparse


def all_parsers(parser: argparse.ArgumentParser):
    """``parser`` and every sub-command's parser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from all_parsers(sub)
