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

from xdrcdepth_ros.core.conversions import stamp_to_ns
from xdrcdepth_ros.core.geometry import invert_transform, transform_from_xyzw


def transform_of(msg: Any) -> np.ndarray:
    """(4, 4) ``T_parent_from_child`` of a ``geometry_msgs/TransformStamped``."""
    t, q = msg.transform.translation, msg.transform.rotation
    return transform_from_xyzw([t.x, t.y, t.z], [q.x, q.y, q.z, q.w])


class TfBuffer:
    """Static edges and stamped dynamic edges, from TFMessages.

    Static edges are versioned by the bag time they arrived at: a bag that joins scenes from
    different vehicles re-publishes ``/tf_static`` per scene, and a lookup ``at_ns`` sees the
    edges in force then (tf2 semantics: a new edge replaces the same parent/child pair, other
    edges stay).
    """

    def __init__(self) -> None:
        self._static_stamps: list[int] = []
        self._static_versions: list[dict[tuple[str, str], np.ndarray]] = []
        self._dynamic: dict[tuple[str, str], tuple[list[int], list[np.ndarray]]] = {}

    def add_static(self, tf_message: Any, stamp_ns: int = 0) -> None:
        """Add or replace static edges of a ``/tf_static`` TFMessage received at ``stamp_ns``."""
        position = bisect.bisect_right(self._static_stamps, stamp_ns)
        edges = dict(self._static_versions[position - 1]) if position else {}
        for transform in tf_message.transforms:
            edges[(transform.header.frame_id, transform.child_frame_id)] = transform_of(transform)
        self._static_stamps.insert(position, int(stamp_ns))
        self._static_versions.insert(position, edges)

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
        return bool(self._static_versions)

    def lookup_static(self, target: str, source: str,
                      at_ns: int | None = None) -> np.ndarray | None:
        """``T_target_from_source`` through static edges (either direction), or None.

        Args:
            target: target frame.
            source: source frame.
            at_ns: bag time of the lookup; None uses the newest static edges.
        """
        if target == source:
            return np.eye(4)
        position = (len(self._static_versions) if at_ns is None
                    else bisect.bisect_right(self._static_stamps, at_ns))
        if position == 0:
            return None
        # Breadth-first over the static graph; edges are walked both ways.
        neighbours: dict[str, list[tuple[str, np.ndarray]]] = {}
        for (parent, child), T in self._static_versions[position - 1].items():
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

        Both sensors hang off ``base`` through static edges (those in force at ``target_ns``);
        ``fixed → base`` is looked up at each stamp (within ``tolerance_ns``). None if any piece
        is missing.
        """
        base_from_source = self.lookup_static(base, source, target_ns)
        base_from_target = self.lookup_static(base, target, target_ns)
        fixed_from_base_s = self.lookup_dynamic(fixed, base, source_ns, tolerance_ns)
        fixed_from_base_t = self.lookup_dynamic(fixed, base, target_ns, tolerance_ns)
        if any(T is None for T in (base_from_source, base_from_target, fixed_from_base_s,
                                   fixed_from_base_t)):
            return None
        return (invert_transform(fixed_from_base_t @ base_from_target)
                @ fixed_from_base_s @ base_from_source)
