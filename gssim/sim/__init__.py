"""Simulation: sessions over scenes (``gssim.sim.session``), their typed messages
(``gssim.sim.messages``), traffic bridges and batch runs."""
