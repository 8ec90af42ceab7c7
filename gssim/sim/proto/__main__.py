"""Regenerate the checked-in Python modules of the sensor service proto."""
from gssim.sim.proto import PROTO, generate

if __name__ == "__main__":
    for path in generate(PROTO.parents[3]):
        print(path)
