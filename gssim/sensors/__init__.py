"""Sensors as ray grids: cameras and LiDARs."""
from gssim.sensors.base import Sensor
from gssim.sensors.camera import Camera, FisheyeCamera, OpenCVCamera, PinholeCamera
from gssim.sensors.limits import LIMITS, SensorConfigError, SensorLimits, SensorTypeError, sensor_limits

CAMERA_MODELS = {"pinhole": PinholeCamera, "opencv": OpenCVCamera, "fisheye": FisheyeCamera}


def camera_from_dict(d: dict) -> Camera:
    """Build a camera from its log-format entry (keys of ``Camera.to_dict``)."""
    model = d.get("model")
    if not isinstance(model, str) or model not in CAMERA_MODELS:
        raise (SensorConfigError if isinstance(model, str) else SensorTypeError)(
            "camera entry", "model", f"camera model {model!r} unknown; expected one of {sorted(CAMERA_MODELS)}")
    kwargs = {k: d[k] for k in ("width", "height", "fx", "fy", "cx", "cy") if k in d}
    missing = {"width", "height", "fx", "fy", "cx", "cy"} - set(kwargs)
    if missing:
        raise SensorConfigError("camera entry", sorted(missing)[0], f"camera entry lacks {sorted(missing)}")
    distortion = d.get("distortion")
    return CAMERA_MODELS[model](**kwargs, distortion=() if distortion is None else distortion,
                                rolling_shutter_s=d.get("rolling_shutter_s", 0.0))


__all__ = ["Sensor", "Camera", "PinholeCamera", "OpenCVCamera", "FisheyeCamera", "camera_from_dict",
           "CAMERA_MODELS", "LIMITS", "SensorLimits", "sensor_limits", "SensorConfigError", "SensorTypeError"]
from gssim.sensors.lidar import LIDAR_MODELS, Lidar, SolidStateLidar, SpinningLidar, lidar_from_dict  # noqa: E402

__all__ += ["Lidar", "SpinningLidar", "SolidStateLidar", "lidar_from_dict", "LIDAR_MODELS"]
