"""``python -m gssim.synth OUT --preset small ...`` (the same as ``gssim synth``)."""
import argparse
import sys

from gssim.synth.cli import add_arguments, main

parser = argparse.ArgumentParser(prog="python -m gssim.synth", description="generate a synthetic driving log")
add_arguments(parser)
sys.exit(main(parser.parse_args()))
