"""Procedural driving worlds and their ground-truth camera and LiDAR renderer."""
from gssim.synth.config import SynthConfig, config_from_dict, load_preset
from gssim.synth.generate import SynthResult, generate_log
from gssim.synth.raycast import RayCaster
from gssim.synth.render import render_camera, render_lidar
from gssim.synth.shading import Light
from gssim.synth.world import World, build_world

__all__ = ["SynthConfig", "config_from_dict", "load_preset", "SynthResult", "generate_log", "RayCaster",
           "render_camera", "render_lidar", "Light", "World", "build_world"]
