"""Reconstruction: the neural surfel scene, its training, evaluation and scene files."""
from gssim.recon.scene import CameraFrame, LidarFrame, Node, Scene
from gssim.recon.scene_files import bake_scene, load_scene, save_scene

__all__ = ["Scene", "Node", "CameraFrame", "LidarFrame", "load_scene", "save_scene", "bake_scene"]
