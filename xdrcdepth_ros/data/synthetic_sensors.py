"""Radar (ARS408-like) and LiDAR (HDL-32E-like) models for the synthetic scenes (numpy only).

Radar frame: x forward, y left, z up, mounted ``radar_forward_m`` ahead of the camera and
``mount_height_m`` (drawn per scene) above the road, axes aligned with the camera's. Like the
Continental ARS408 in nuScenes, returns carry no elevation (z = 0 in the radar frame), so they
project at the mount height rather than on the surface that reflected them. A sweep has object
returns (a few per vehicle, occasional ones on poles, many on facades), weak kerb clutter, random
false returns, multipath ghosts behind vehicles (same azimuth, about twice the range, weaker),
misses that grow with range, and range / azimuth noise.

Velocities follow the nuScenes PCD fields: ``vx, vy`` are the radial (Doppler) velocity decomposed
along the line of sight *without* ego-motion compensation; ``vx_comp, vy_comp`` have the ego motion
removed. A static object therefore reads ``v_r = -ego_speed * cos(azimuth)`` raw and ~0
compensated.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xdrcdepth_ros.data.synthetic_scene import Box, Kind, Scene, VEHICLE_KINDS

#: ``kind`` of random clutter and of multipath ghost returns (no box made them).
CLUTTER_KIND = -1
GHOST_KIND = -2

#: Per-point fields the synthetic radar produces (besides x, y, z).
RADAR_FIELD_NAMES: tuple[str, ...] = ('rcs', 'vx', 'vy', 'vx_comp', 'vy_comp')

#: Velodyne HDL-32E beam elevations, degrees (the nuScenes LIDAR_TOP sensor).
HDL32_ELEVATIONS_DEG = np.linspace(10.67, -30.67, 32)


@dataclass(frozen=True)
class RadarModel:
    """Parameters of the simulated radar (metres, degrees, dBsm, m/s)."""

    radar_forward_m: float = 1.9
    mount_height_m: tuple[float, float] = (0.45, 0.8)
    near_fov_deg: float = 45.0
    near_range_m: float = 70.0
    far_fov_deg: float = 9.0
    far_range_m: float = 200.0
    range_sigma_m: tuple[float, float] = (0.2, 0.5)
    azimuth_sigma_deg: tuple[float, float] = (0.3, 0.8)
    velocity_sigma: float = 0.15
    miss_rate: tuple[float, float] = (0.05, 0.2)
    clutter_rate: tuple[float, float] = (20.0, 40.0)
    ghost_probability: float = 0.08

    def T_cam_from_radar(self, cam_height: float, mount_height: float) -> np.ndarray:
        """(4, 4) camera optical frame <- radar frame (x fwd, y left, z up); both heights are
        above the road, metres."""
        transform = np.eye(4)
        transform[:3, :3] = [[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]
        transform[:3, 3] = [0.0, cam_height - mount_height, self.radar_forward_m]
        return transform


def _visible_edges(box: Box, origin_z: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Footprint edges (start, end) in (x, z) that face a sensor at (0, origin_z)."""
    edges = []
    if box.z0 > origin_z:
        edges.append((np.array([box.x0, box.z0]), np.array([box.x1, box.z0])))
    z0 = max(box.z0, origin_z + 0.5)
    if box.z1 > z0:
        if box.x1 < 0:
            edges.append((np.array([box.x1, z0]), np.array([box.x1, box.z1])))
        elif box.x0 > 0:
            edges.append((np.array([box.x0, z0]), np.array([box.x0, box.z1])))
    return edges


def _returns_on_box(box: Box, rng: np.random.Generator, origin_z: float,
                    max_range: float) -> tuple[np.ndarray, float]:
    """Candidate reflection points (n, 2) in (x, z) on a box and its mean RCS (dBsm)."""
    edges = _visible_edges(box, origin_z)
    if not edges:
        return np.zeros((0, 2)), 0.0
    lengths = np.array([np.linalg.norm(b - a) for a, b in edges])
    centre = np.array([(box.x0 + box.x1) / 2, (box.z0 + box.z1) / 2 - origin_z])
    distance = max(float(np.linalg.norm(centre)), 1.0)
    if distance > max_range + 30:
        return np.zeros((0, 2)), 0.0
    if box.kind in VEHICLE_KINDS:
        scale = 1.6 if box.kind == Kind.TRUCK else 1.0
        count = 1 + rng.poisson(4.0 * scale * min(1.0, 30.0 / distance))
        count = min(count, 9)
        rcs = rng.normal(15.0 if box.kind == Kind.TRUCK else 8.0, 3.0)
    elif box.kind in (Kind.POLE, Kind.SIGN, Kind.TRUNK):
        if box.x1 - box.x0 > 0.5 and box.kind == Kind.POLE:  # lamp arms are above the beam
            return np.zeros((0, 2)), 0.0
        count = int(rng.random() < 0.55)
        rcs = rng.normal(0.0, 3.0)
    elif box.kind in (Kind.BUILDING, Kind.BACKDROP):
        count = rng.poisson(lengths.sum() / 2.0)
        rcs = rng.uniform(2.0, 20.0)
    elif box.kind == Kind.WALL:
        count = rng.poisson(lengths.sum() / 10.0)
        rcs = rng.uniform(0.0, 12.0)
    else:
        return np.zeros((0, 2)), 0.0
    if count == 0:
        return np.zeros((0, 2)), 0.0
    pick = rng.choice(len(edges), size=count, p=lengths / lengths.sum())
    frac = rng.random(count)
    starts = np.array([edges[i][0] for i in pick])
    ends = np.array([edges[i][1] for i in pick])
    return starts + (ends - starts) * frac[:, None], float(rcs)


def _occluded(points_xz: np.ndarray, owner: np.ndarray, vehicles: list[tuple[int, Box]],
              origin_z: float) -> np.ndarray:
    """True where a vehicle other than the point's owner lies in front of it (top view)."""
    out = np.zeros(len(points_xz), dtype=bool)
    if not len(points_xz):
        return out
    az = np.arctan2(points_xz[:, 0], points_xz[:, 1] - origin_z)
    rng_pt = np.hypot(points_xz[:, 0], points_xz[:, 1] - origin_z)
    for index, box in vehicles:
        corners = np.array([[box.x0, box.z0], [box.x1, box.z0], [box.x0, box.z1],
                            [box.x1, box.z1]])
        rel_z = corners[:, 1] - origin_z
        if np.all(rel_z <= 0.5):
            continue
        c_az = np.arctan2(corners[:, 0], np.maximum(rel_z, 0.5))
        c_rng = np.hypot(corners[:, 0], rel_z).min()
        behind = (az > c_az.min()) & (az < c_az.max()) & (rng_pt > c_rng + 1.0)
        out |= behind & (owner != index)
    return out


def simulate_radar(scene: Scene, rng: np.random.Generator,
                   model: RadarModel = RadarModel()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One radar sweep of the scene.

    Args:
        scene: the street (camera frame).
        rng: randomness for returns, noise, misses and clutter.
        model: radar parameters.

    Returns:
        ``(points, fields)``: (N, 3) float32 x, y, z in the radar frame (z = 0, metres), and a
        dict of (N,) float32 arrays for :data:`RADAR_FIELD_NAMES` plus ``'kind'`` (int32 box
        kind, :data:`CLUTTER_KIND` for clutter, :data:`GHOST_KIND` for multipath ghosts).
    """
    fwd = model.radar_forward_m
    xz, rcs, vel, kind, owner = [], [], [], [], []
    vehicles = []
    for index, box in enumerate(scene.boxes):
        pts, mean_rcs = _returns_on_box(box, rng, fwd, model.near_range_m)
        if not len(pts):
            continue
        if box.kind in VEHICLE_KINDS:
            vehicles.append((index, box))
        xz.append(pts)
        rcs.append(mean_rcs + rng.normal(0.0, 2.0, len(pts)))
        vel.append(np.tile(box.velocity, (len(pts), 1)))
        kind.append(np.full(len(pts), int(box.kind)))
        owner.append(np.full(len(pts), index))
    # Kerb and road-side clutter: weak static returns along the kerb lines.
    for kerb in (scene.road_left, scene.road_right):
        n = rng.poisson(5.0)
        xz.append(np.stack([np.full(n, kerb), rng.uniform(5.0, 60.0, n)], 1))
        rcs.append(rng.uniform(-8.0, 3.0, n))
        vel.append(np.zeros((n, 2)))
        kind.append(np.full(n, CLUTTER_KIND))
        owner.append(np.full(n, -1))
    xz_all = np.concatenate(xz) if xz else np.zeros((0, 2))
    rcs_all = np.concatenate(rcs) if rcs else np.zeros(0)
    vel_all = np.concatenate(vel) if vel else np.zeros((0, 2))
    kind_all = np.concatenate(kind) if kind else np.zeros(0, int)
    owner_all = np.concatenate(owner) if owner else np.zeros(0, int)
    hidden = _occluded(xz_all, owner_all, vehicles, fwd) & (rng.random(len(xz_all)) > 0.15)
    # Polar coordinates in the radar frame: x forward (= camera z), y left (= -camera x).
    rel_fwd = xz_all[:, 1] - fwd
    rel_left = -xz_all[:, 0]
    rng_true = np.hypot(rel_fwd, rel_left)
    az_true = np.arctan2(rel_left, rel_fwd)
    # Multipath ghosts: a vehicle return bounced once more (road or another car) shows up on
    # the same bearing at about twice the range, weaker, with the vehicle's velocity.
    vehicle = np.isin(kind_all, [int(k) for k in VEHICLE_KINDS]) & ~hidden
    ghost = vehicle & (rng.random(len(xz_all)) < model.ghost_probability)
    n_ghost = int(ghost.sum())
    rng_true = np.concatenate([rng_true, rng_true[ghost] * rng.uniform(1.8, 2.2, n_ghost)])
    az_true = np.concatenate([az_true, az_true[ghost]])
    rcs_all = np.concatenate([rcs_all, rcs_all[ghost] - rng.uniform(6.0, 12.0, n_ghost)])
    vel_all = np.concatenate([vel_all, vel_all[ghost]])
    kind_all = np.concatenate([kind_all, np.full(n_ghost, GHOST_KIND)])
    hidden = np.concatenate([hidden, np.zeros(n_ghost, bool)])
    miss = rng.random(len(rng_true)) < rng.uniform(*model.miss_rate) + 0.2 * rng_true / 100.0
    keep = ~hidden & ~miss
    # Random false returns anywhere in the near beam.
    n_clutter = rng.poisson(rng.uniform(*model.clutter_rate))
    c_range = rng.uniform(3.0, 90.0, n_clutter)
    c_az = np.radians(rng.uniform(-model.near_fov_deg, model.near_fov_deg, n_clutter))
    c_vel = np.zeros((n_clutter, 2))
    ghosts = rng.random(n_clutter) < 0.2
    c_vel[ghosts, 1] = rng.normal(0.0, 4.0, ghosts.sum())
    rng_true = np.concatenate([rng_true[keep], c_range])
    az_true = np.concatenate([az_true[keep], c_az])
    rcs_out = np.concatenate([rcs_all[keep], rng.uniform(-12.0, 4.0, n_clutter)])
    vel_cam = np.concatenate([vel_all[keep], c_vel])
    kind_out = np.concatenate([kind_all[keep], np.full(n_clutter, CLUTTER_KIND)])
    in_fov = (((np.abs(az_true) <= np.radians(model.near_fov_deg))
               & (rng_true <= model.near_range_m))
              | ((np.abs(az_true) <= np.radians(model.far_fov_deg))
                 & (rng_true <= model.far_range_m))) & (rng_true > 0.5)
    rng_true, az_true, rcs_out = rng_true[in_fov], az_true[in_fov], rcs_out[in_fov]
    vel_cam, kind_out = vel_cam[in_fov], kind_out[in_fov]
    n = len(rng_true)
    # Doppler: radial component of the object's velocity relative to the (moving) radar.
    ux, uy = np.cos(az_true), np.sin(az_true)
    v_obj_x, v_obj_y = vel_cam[:, 1], -vel_cam[:, 0]  # camera (x, z) -> radar (fwd, left)
    radial_comp = v_obj_x * ux + v_obj_y * uy + rng.normal(0.0, model.velocity_sigma, n)
    radial_raw = radial_comp - scene.ego_speed * ux
    meas_range = rng_true + rng.normal(0.0, rng.uniform(*model.range_sigma_m), n)
    meas_az = az_true + np.radians(rng.normal(0.0, rng.uniform(*model.azimuth_sigma_deg), n))
    points = np.stack([meas_range * np.cos(meas_az), meas_range * np.sin(meas_az),
                       np.zeros(n)], 1).astype(np.float32)
    fields = {
        'rcs': rcs_out.astype(np.float32),
        'vx': (radial_raw * ux).astype(np.float32), 'vy': (radial_raw * uy).astype(np.float32),
        'vx_comp': (radial_comp * ux).astype(np.float32),
        'vy_comp': (radial_comp * uy).astype(np.float32),
        'kind': kind_out.astype(np.int32),
    }
    return points, fields


def simulate_lidar(depth: np.ndarray, K: np.ndarray, rng: np.random.Generator,
                   elevations_deg: np.ndarray = HDL32_ELEVATIONS_DEG,
                   azimuth_step_deg: float = 0.33,
                   max_range_m: float = 100.0, dropout: float = 0.03) -> np.ndarray:
    """Sample a rotating-LiDAR pattern from an exact depth image.

    The LiDAR is placed at the camera centre (no parallax); each beam sample is snapped to the
    nearest pixel centre, so the returned points re-project exactly onto the pixels they came
    from and carry the exact rendered depth.

    Args:
        depth: (H, W) camera-frame depth in metres, 0 (or inf) for sky.
        K: (3, 3) intrinsics of ``depth``.
        rng: randomness for the azimuth phase and dropouts.
        elevations_deg: beam elevations (positive up), degrees.
        azimuth_step_deg: horizontal angular step, degrees.
        max_range_m: returns beyond this Euclidean range are lost.
        dropout: fraction of returns randomly lost.

    Returns:
        (M, 3) float64 points in the camera optical frame, metres.
    """
    height, width = depth.shape
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    half = np.arctan(max(cx + 0.5, width - 0.5 - cx) / fx)
    step = np.radians(azimuth_step_deg)
    theta = np.arange(-half, half, step) + rng.uniform(0.0, step)
    phi = np.radians(np.asarray(elevations_deg))
    shape = (len(phi), len(theta))
    u = np.broadcast_to(cx + fx * np.tan(theta)[None, :], shape)
    v = cy - fy * np.tan(phi)[:, None] / np.cos(theta)[None, :]
    ui = np.floor(u + 0.5).astype(np.int64).ravel()
    vi = np.floor(v + 0.5).astype(np.int64).ravel()
    inside = (ui >= 0) & (ui < width) & (vi >= 0) & (vi < height)
    ui, vi = ui[inside], vi[inside]
    z = depth[vi, ui].astype(np.float64)
    x = z * (ui - cx) / fx
    y = z * (vi - cy) / fy
    valid = np.isfinite(z) & (z > 0)
    valid &= np.sqrt(x ** 2 + y ** 2 + z ** 2) <= max_range_m
    valid &= rng.random(len(z)) >= dropout
    return np.stack([x[valid], y[valid], z[valid]], 1)
