"""Tests of gssim.sim and the server."""
