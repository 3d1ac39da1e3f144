"""A small TF buffer for bags, ROS-free: static transforms plus stamped ``odom → base_link``.

Enough for what replay and evaluation need without tf2_ros: a static lookup between two sensor
frames (through any chain of ``/tf_static`` edges) and the ego-motion-compensated chain
``camera(t_c) ← odom ← sensor(t_s)`` that nuScenes' own projection uses. Transforms are (4, 4)
float64 ``T_target_from_source``; stamps are int ns.
"""
from __future__ import annotations

import bisect
from typing import Any

import numpy as np

from xdrcdepth_ros.conversions import stamp_to_ns
from xdrcdepth_ros.geometry import invert_transform, transform_from_xyzw


def transform_of(msg: Any) -> np.ndarray:
    """(4, 4) ``T_parent_from_child`` of a ``geometry_msgs/TransformStamped``."""
    t, q = msg.transform.translation, msg.transform.rotation
    return transform_from_xyzw([t.x, t.y, t.z], [q.x, q.y, q.z, q.w])


class TfBuffer:
    """Static edges (latest message wins) and stamped dynamic edges, from TFMessages."""

    def __init__(self) -> None:
        self._static: dict[tuple[str, str], np.ndarray] = {}
        self._dynamic: dict[tuple[str, str], tuple[list[int], list[np.ndarray]]] = {}

    def add_static(self, tf_message: Any) -> None:
        """Add or replace the static edges of a ``/tf_static`` TFMessage."""
        for transform in tf_message.transforms:
            key = (transform.header.frame_id, transform.child_frame_id)
            self._static[key] = transform_of(transform)

    def add_dynamic(self, tf_message: Any) -> None:
        """Add the stamped edges of a ``/tf`` TFMessage."""
        for transform in tf_message.transforms:
            stamps, values = self._dynamic.setdefault(
                (transform.header.frame_id, transform.child_frame_id), ([], []))
            stamp = stamp_to_ns(transform.header.stamp)
            position = bisect.bisect_left(stamps, stamp)
            if position < len(stamps) and stamps[position] == stamp:
                values[position] = transform_of(transform)
            else:
                stamps.insert(position, stamp)
                values.insert(position, transform_of(transform))

    @property
    def has_static(self) -> bool:
        """True once any static edge is known."""
        return bool(self._static)

    def lookup_static(self, target: str, source: str) -> np.ndarray | None:
        """``T_target_from_source`` through static edges (either direction), or None."""
        if target == source:
            return np.eye(4)
        # Breadth-first over the static graph; edges are walked both ways.
        neighbours: dict[str, list[tuple[str, np.ndarray]]] = {}
        for (parent, child), T in self._static.items():
            neighbours.setdefault(child, []).append((parent, T))
            neighbours.setdefault(parent, []).append((child, invert_transform(T)))
        frontier = [(source, np.eye(4))]
        seen = {source}
        while frontier:
            frame, T_frame_from_source = frontier.pop(0)
            for other, T_other_from_frame in neighbours.get(frame, []):
                if other in seen:
                    continue
                T_other_from_source = T_other_from_frame @ T_frame_from_source
                if other == target:
                    return T_other_from_source
                seen.add(other)
                frontier.append((other, T_other_from_source))
        return None

    def lookup_dynamic(self, parent: str, child: str, stamp_ns: int,
                       tolerance_ns: int) -> np.ndarray | None:
        """``T_parent_from_child`` of the stamped edge nearest ``stamp_ns`` within tolerance."""
        entry = self._dynamic.get((parent, child))
        if entry is None or not entry[0]:
            return None
        stamps, values = entry
        position = bisect.bisect_left(stamps, stamp_ns)
        candidates = [i for i in (position - 1, position) if 0 <= i < len(stamps)]
        best = min(candidates, key=lambda i: abs(stamps[i] - stamp_ns))
        if abs(stamps[best] - stamp_ns) > tolerance_ns:
            return None
        return values[best]

    def lookup_compensated(self, target: str, target_ns: int, source: str, source_ns: int, *,
                           fixed: str = 'odom', base: str = 'base_link',
                           tolerance_ns: int = 1_000_000) -> np.ndarray | None:
        """``T_target(t_target)_from_source(t_source)`` through ``fixed`` (ego motion compensated).

        Both sensors hang off ``base`` through static edges; ``fixed → base`` is looked up at
        each stamp (within ``tolerance_ns``). None if any piece is missing.
        """
        base_from_source = self.lookup_static(base, source)
        base_from_target = self.lookup_static(base, target)
        fixed_from_base_s = self.lookup_dynamic(fixed, base, source_ns, tolerance_ns)
        fixed_from_base_t = self.lookup_dynamic(fixed, base, target_ns, tolerance_ns)
        if any(T is None for T in (base_from_source, base_from_target, fixed_from_base_s,
                                   fixed_from_base_t)):
            return None
        return (invert_transform(fixed_from_base_t @ base_from_target)
                @ fixed_from_base_s @ base_from_source)
