"""(placeholder: filled in by its owner)"""

import argparse


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    pass
