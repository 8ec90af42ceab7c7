"""Conversion between the gRPC messages (``sensor_service_pb2``) and the session layer's
pydantic messages (``gssim.sim.messages``): the one place that knows both.

Fields are matched by name; the proto's conventions (see ``sensor_service.proto``) map
onto the models: ``Pose`` <-> 4x4 nested lists, ``TimeRange`` <-> ``(start, end)``,
``Struct`` <-> ``dict`` (whole numbers back as ints), an unset optional field or message
<-> ``None`` (or the model's default), an empty repeated field <-> ``None`` where the model
allows it.  Proto fields the model lacks (``session_id`` of a ``StepRequest``) are the
transport's and are skipped.

>>> pb = to_proto(result)                    # StepResult -> sensor_service_pb2.StepResult
>>> req = from_proto(pb_request, StepRequest)  # validated, or pydantic.ValidationError
"""
from __future__ import annotations

import math
import typing
from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message as ProtoMessage
from pydantic import BaseModel

from gssim.sim.proto import sensor_service_pb2 as pb

POSE = "gssim.sim.v1.Pose"
TIME_RANGE = "gssim.sim.v1.TimeRange"
STRUCT = "google.protobuf.Struct"


class ProtoFieldError(ValueError):
    """A proto field that cannot stand for its model field (a pose without 16 values)."""


# ------------------------------------------------------------------------ model -> proto
def to_proto(model: BaseModel, message: ProtoMessage | None = None) -> ProtoMessage:
    """The proto message of the same name as ``model``'s class (or fill ``message``)."""
    if message is None:
        message = getattr(pb, type(model).__name__)()
    fields = message.DESCRIPTOR.fields_by_name
    for name in type(model).model_fields:
        value = getattr(model, name)
        if value is None:
            continue
        if name not in fields:
            raise KeyError(f"proto {message.DESCRIPTOR.full_name} has no field {name!r} of {type(model).__name__}")
        fd = fields[name]
        if _is_map(fd):
            target = getattr(message, name)
            for key, item in value.items():
                if _map_value(fd).message_type is None:
                    target[key] = item
                else:
                    _set_message(target[key], item)
        elif _is_repeated(fd):
            target = getattr(message, name)
            if fd.message_type is None:
                target.extend(value)
            else:
                for item in value:
                    _set_message(target.add(), item)
        elif fd.message_type is not None:
            _set_message(getattr(message, name), value)
        else:
            setattr(message, name, value)
    return message


def _set_message(target: ProtoMessage, value: Any) -> None:
    kind = target.DESCRIPTOR.full_name
    if kind == POSE:
        target.m.extend(float(x) for row in value for x in row)
    elif kind == TIME_RANGE:
        target.start, target.end = (float(x) for x in value)
    elif kind == STRUCT:
        target.update(value)
    else:
        to_proto(value, target)


# ------------------------------------------------------------------------ proto -> model
def from_proto(message: ProtoMessage, model_cls: type[BaseModel]) -> BaseModel:
    """``model_cls`` validated from ``message`` (pydantic.ValidationError when invalid;
    ProtoFieldError when a proto value has no model form)."""
    return model_cls.model_validate(_fields(message, model_cls))


def _fields(message: ProtoMessage, model_cls: type[BaseModel]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    model_fields = model_cls.model_fields
    for fd in message.DESCRIPTOR.fields:
        name = fd.name
        if name not in model_fields:
            continue
        info = model_fields[name]
        value = getattr(message, name)
        if _is_map(fd):
            nested = _nested_model(info.annotation)
            out[name] = {k: (_plain_message(v, nested) if _map_value(fd).message_type else v)
                         for k, v in value.items()}
        elif _is_repeated(fd):
            if not value and not info.is_required() and info.default is None:
                continue
            nested = _nested_model(info.annotation)
            out[name] = [_plain_message(v, nested) if fd.message_type else v for v in value]
        elif fd.has_presence and not message.HasField(name):
            continue
        elif fd.message_type is not None:
            out[name] = _plain_message(value, _nested_model(info.annotation), name)
        else:
            out[name] = value
    return out


def _plain_message(value: ProtoMessage, nested: type[BaseModel] | None, where: str = "") -> Any:
    kind = value.DESCRIPTOR.full_name
    if kind == POSE:
        if len(value.m) != 16:
            raise ProtoFieldError(f"{where}: a pose needs 16 values (4x4 row-major), got {len(value.m)}")
        m = list(value.m)
        return [m[0:4], m[4:8], m[8:12], m[12:16]]
    if kind == TIME_RANGE:
        return (value.start, value.end)
    if kind == STRUCT:
        return _plain_struct(value)
    if nested is None:
        raise TypeError(f"no model for proto message {kind}")
    return _fields(value, nested)


def _plain_struct(value: Any) -> Any:
    """A Struct/Value/ListValue as plain Python (whole numbers as ints)."""
    if isinstance(value, struct_pb2.Struct):
        return {k: _plain_struct(v) for k, v in value.items()}
    if isinstance(value, struct_pb2.ListValue):
        return [_plain_struct(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 2 ** 53:
        return int(value)
    return value


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``list[X] | None``, ``dict[str, X]``)."""
    if typing.get_origin(annotation) is None:
        return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    for arg in typing.get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _is_repeated(fd: FieldDescriptor) -> bool:
    return fd.is_repeated


def _is_map(fd: FieldDescriptor) -> bool:
    return _is_repeated(fd) and fd.message_type is not None and fd.message_type.GetOptions().map_entry


def _map_value(fd: FieldDescriptor) -> FieldDescriptor:
    return fd.message_type.fields_by_name["value"]
