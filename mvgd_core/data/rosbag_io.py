"""rosbag2 (sqlite3 or mcap) reader and writer for posed RGB-D frames, via pure-Python `rosbags`.

No ROS installation is needed: `rosbags` parses and writes the bag and CDR itself (typestore
ROS2_KILTED). Nothing here imports rclpy.

Reading (`read_bag`): colour images (rgb8, bgr8, rgba8, bgra8, mono8), optional depth images
(32FC1 metres, 16UC1 millimetres) matched to colour by stamp, CameraInfo intrinsics, and the
camera pose at each image stamp resolved through /tf and /tf_static (TFTree: lerp + slerp) as
T_fixed_optical, where the optical frame is the image header's frame_id (OpenCV optical by
REP 103 convention for `*_optical_frame`).

Writing (`write_bag`) follows REP 105 (`BagLayout` defaults):
    /tf_static : base_link -> camera_link (fixed mount), camera_link -> camera_color_optical_frame
                 (the REP 103 body -> optical rotation)
    /tf        : map -> odom (identity, re-sent at every frame like a localizer), odom -> base_link
    /camera/color/image_raw    sensor_msgs/Image rgb8, frame_id camera_color_optical_frame
    /camera/depth/image_raw    sensor_msgs/Image 32FC1 (or 16UC1), aligned to colour, same frame_id
    /camera/color/camera_info  sensor_msgs/CameraInfo (plumb_bob, zero distortion), same frame_id
so that lookup(map, camera_color_optical_frame, stamp) gives back each frame's T_wc exactly.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from mvgd_core.cameras import R_BODY_OPTICAL, make_pose, matrix_to_quat
from mvgd_core.data.tf_tree import TFError, TFTree
from mvgd_core.data.tum import associate
from mvgd_core.data.types import Frame
from mvgd_core.distortion import LensDistortion, camera_info_rectification, remap_rgbd

log = logging.getLogger(__name__)

IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TF = "tf2_msgs/msg/TFMessage"
COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("32FC1", "16UC1")


class BagError(ValueError):
    """A bag is missing, empty, lacks a topic, or holds messages we cannot use; says which."""


def typestore():
    """The rosbags typestore used for reading and writing (ROS 2 Kilted message definitions)."""
    return get_typestore(Stores.ROS2_KILTED)


@dataclass(frozen=True)
class BagLayout:
    """Topic and frame names of a written bag (REP 105 chain map -> odom -> base_link -> camera).

    mount_xyz: translation of camera_link in base_link (m). Topics/frames are what `read_bag`
    defaults to as well.
    """

    rgb_topic: str = "/camera/color/image_raw"
    depth_topic: str = "/camera/depth/image_raw"
    info_topic: str = "/camera/color/camera_info"
    map_frame: str = "map"
    odom_frame: str = "odom"
    base_frame: str = "base_link"
    camera_link: str = "camera_link"
    optical_frame: str = "camera_color_optical_frame"
    mount_xyz: tuple[float, float, float] = (0.1, 0.0, 0.3)


# --------------------------------------------------------------------------- message helpers


def _stamp(sec_float: float):
    ns = int(round(sec_float * 1e9))
    return ns // 1_000_000_000, ns % 1_000_000_000


def _header(ts, stamp: float, frame_id: str):
    sec, nsec = _stamp(stamp)
    return ts.types["std_msgs/msg/Header"](stamp=ts.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec), frame_id=frame_id)


def _image_msg(ts, stamp, frame_id, arr: np.ndarray, encoding: str):
    h, w = arr.shape[:2]
    data = np.ascontiguousarray(arr).view(np.uint8).reshape(-1)
    return ts.types[IMAGE](header=_header(ts, stamp, frame_id), height=h, width=w, encoding=encoding, is_bigendian=0, step=data.size // h, data=data)


def _camera_info_msg(ts, stamp, frame_id, K: np.ndarray, h: int, w: int, lens: LensDistortion | None = None):
    P = np.zeros((3, 4))
    P[:3, :3] = K  # the rectified camera: image_proc rectifies into the same K
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    model, d = (lens.model, np.asarray(lens.coeffs, dtype=np.float64)) if lens else ("plumb_bob", np.zeros(5))
    return ts.types[CAMERA_INFO](
        header=_header(ts, stamp, frame_id), height=h, width=w, distortion_model=model, d=d,
        k=K.reshape(-1).astype(np.float64), r=np.eye(3).reshape(-1), p=P.reshape(-1), binning_x=0, binning_y=0, roi=roi,
    )  # fmt: skip


def _transform_msg(ts, stamp, parent, child, T: np.ndarray):
    q = matrix_to_quat(T[:3, :3])
    tr = ts.types["geometry_msgs/msg/Transform"](
        translation=ts.types["geometry_msgs/msg/Vector3"](x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
        rotation=ts.types["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
    )
    return ts.types["geometry_msgs/msg/TransformStamped"](header=_header(ts, stamp, parent), child_frame_id=child, transform=tr)


def decode_image(msg, where: str = "") -> tuple[np.ndarray, str]:
    """(array, kind) from a deserialized sensor_msgs/Image; kind "rgb" -> (H, W, 3) uint8, "depth" -> (H, W) float32 m.

    Handles row padding (step) and big-endian data; 32FC1 NaN/Inf become 0 (invalid),
    16UC1 is millimetres. Raises BagError for other encodings or truncated data.
    """
    enc, h, w, step = msg.encoding, int(msg.height), int(msg.width), int(msg.step)
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "32FC1": 4, "16UC1": 2}  # bytes per pixel
    if enc not in channels:
        raise BagError(f"{where}: unsupported image encoding {enc!r}; supported: {COLOUR_ENCODINGS + DEPTH_ENCODINGS}")
    bpp = channels[enc]
    data = np.asarray(msg.data, dtype=np.uint8)
    if step < w * bpp or data.size < step * h:
        raise BagError(f"{where}: image data too short for {w}x{h} {enc} (step {step}, {data.size} bytes)")
    rows = data[: step * h].reshape(h, step)[:, : w * bpp]  # drop row padding
    if enc in ("32FC1", "16UC1"):
        dt = np.dtype(np.float32 if enc == "32FC1" else np.uint16).newbyteorder(">" if msg.is_bigendian else "<")
        d = rows.copy().view(dt).reshape(h, w).astype(np.float32)
        if enc == "16UC1":
            d = d / 1000.0
        return np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32), "depth"
    px = rows.reshape(h, w, bpp)
    if enc == "mono8":
        return np.repeat(px, 3, axis=2).copy(), "rgb"
    rgb = px[..., :3] if enc.startswith("rgb") else px[..., 2::-1]
    return np.ascontiguousarray(rgb), "rgb"


# --------------------------------------------------------------------------- writer


def write_bag(
    frames: list[Frame],
    path,
    storage: str = "mcap",
    depth_encoding: str = "32FC1",
    layout: BagLayout = BagLayout(),
    stamp_offset: float = 0.0,
    overwrite: bool = False,
    distortion: LensDistortion | None = None,
) -> Path:
    """Write frames as a rosbag2 folder at `path` (see the module docstring for topics/frames).

    storage: "mcap" | "sqlite3". depth_encoding: "32FC1" (float metres, exact) | "16UC1"
    (millimetres, depths beyond 65.535 m become 0). stamp_offset (s) is added to every frame
    stamp (ROS time 0 means "latest" to tf2, so sequences starting at 0 need an offset).
    Frames must be in increasing stamp order. distortion: the lens of raw (not undistorted)
    frames, written into every CameraInfo (default: none, pinhole images). Returns the bag path.
    """
    stamps = _write_stamps(frames, storage, depth_encoding, stamp_offset)
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise BagError(f"write_bag: {path} exists (pass overwrite=True to replace it)")
        shutil.rmtree(path)
    ts = typestore()
    L = layout
    T_base_link = make_pose(np.eye(3), L.mount_xyz)  # base_link -> camera_link
    T_link_opt = make_pose(R_BODY_OPTICAL, np.zeros(3))  # camera_link -> optical (REP 103 body -> optical)
    T_base_opt_inv = np.linalg.inv(T_base_link @ T_link_opt)
    has_depth = any(f.depth is not None for f in frames)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as w:
        c_static = w.add_connection("/tf_static", TF, typestore=ts, offered_qos_profiles=[_latched_qos()])
        c_tf = w.add_connection("/tf", TF, typestore=ts)
        c_info = w.add_connection(L.info_topic, CAMERA_INFO, typestore=ts)
        c_rgb = w.add_connection(L.rgb_topic, IMAGE, typestore=ts)
        c_depth = w.add_connection(L.depth_topic, IMAGE, typestore=ts) if has_depth else None

        def put(conn, msg, msgtype, t):
            w.write(conn, int(round(t * 1e9)), ts.serialize_cdr(msg, msgtype))

        t0 = stamps[0]
        static = ts.types[TF](transforms=[
            _transform_msg(ts, t0, L.base_frame, L.camera_link, T_base_link),
            _transform_msg(ts, t0, L.camera_link, L.optical_frame, T_link_opt),
        ])  # fmt: skip
        put(c_static, static, TF, t0)
        for f, t in zip(frames, stamps):
            T_odom_base = f.T_wc @ T_base_opt_inv  # map == odom here (identity map -> odom)
            tf = ts.types[TF](transforms=[_transform_msg(ts, t, L.map_frame, L.odom_frame, np.eye(4)), _transform_msg(ts, t, L.odom_frame, L.base_frame, T_odom_base)])
            put(c_tf, tf, TF, t)
            put(c_info, _camera_info_msg(ts, t, L.optical_frame, f.K, f.height, f.width, distortion), CAMERA_INFO, t)
            put(c_rgb, _image_msg(ts, t, L.optical_frame, f.rgb, "rgb8"), IMAGE, t)
            if f.depth is not None:
                put(c_depth, _image_msg(ts, t, L.optical_frame, _depth_payload(f.depth, depth_encoding), depth_encoding), IMAGE, t)
    return path


def _write_stamps(frames: list[Frame], storage: str, depth_encoding: str, stamp_offset: float) -> np.ndarray:
    """The frames' bag stamps (s, offset added) after checking write_bag's arguments; BagError says what is wrong."""
    if not frames:
        raise BagError("write_bag: no frames to write")
    if storage not in ("mcap", "sqlite3"):
        raise BagError(f"write_bag: storage must be 'mcap' or 'sqlite3', got {storage!r}")
    if depth_encoding not in DEPTH_ENCODINGS:
        raise BagError(f"write_bag: depth_encoding must be one of {DEPTH_ENCODINGS}, got {depth_encoding!r}")
    stamps = np.array([f.stamp for f in frames]) + stamp_offset
    if np.any(np.diff(stamps) <= 0) or stamps[0] <= 0:
        raise BagError(f"write_bag: frame stamps (+ offset {stamp_offset}) must be positive and strictly increasing")
    return stamps


def _depth_payload(depth: np.ndarray, encoding: str) -> np.ndarray:
    """(H, W) metres -> the image's array: 32FC1 float metres (exact), or 16UC1 millimetres with 0
    where the depth is invalid or beyond 65.535 m."""
    if encoding == "32FC1":
        return depth.astype("<f4")
    mm = np.round(depth.astype(np.float64) * 1000.0)
    return np.where((mm > 0) & (mm <= 65535), mm, 0).astype("<u2")


def _latched_qos():
    """Transient-local, reliable, keep-last 1: how /tf_static is offered (late joiners get it)."""
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    zero = QosTime(sec=0, nsec=0)
    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, zero, zero, QosLiveliness.AUTOMATIC, zero, False)


# --------------------------------------------------------------------------- reader


def _sec(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def read_bag(
    path,
    rgb_topic: str = BagLayout.rgb_topic,
    depth_topic: str | None = BagLayout.depth_topic,
    info_topic: str = BagLayout.info_topic,
    fixed_frame: str = "map",
    max_dt: float = 0.02,
    tf_tolerance: float = 0.0,
    report: dict | None = None,
    undistort: bool = True,
) -> list[Frame]:
    """Posed frames from a rosbag2 folder (sqlite3 or mcap), sorted by stamp.

    rgb_topic: colour sensor_msgs/Image. depth_topic: depth Image aligned to colour (same
    frame_id), matched by stamp within max_dt (s), or None / "" for none. info_topic:
    CameraInfo (the one nearest in time to each image; its size must match). fixed_frame: the
    world frame poses are expressed in; T_wc = TF lookup(fixed_frame, image frame_id, stamp).
    tf_tolerance: seconds a stamp may lie outside the TF data (clamped). undistort: a CameraInfo
    with lens distortion gets its colour and depth rectified into its pinhole camera P (K when
    P is empty), as the node does with `undistort` (mvgd_ros/rectify.py), so ground truth and
    the node's output share one camera; off: frames keep the raw images and K.

    Images whose pose cannot be looked up (TF not yet available / extrapolation) are skipped
    and counted; colour images without a depth partner keep depth=None. Counts are logged and
    put into `report` (keys images, read, no_tf, no_depth). Raises BagError for a missing or
    empty bag, a missing topic (listing what the bag has), an unknown encoding, bad transforms
    or mismatched sizes/frames, each naming the topic and stamp.
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f"bag not found: {path}")
    tree, rgbs, depths, infos = _read_messages(path, rgb_topic, depth_topic, info_topic, tf_tolerance, undistort)
    if not rgbs:
        raise BagError(f"{path}: no messages on {rgb_topic}")
    if not infos:
        raise BagError(f"{path}: no messages on {info_topic}; CameraInfo is needed for intrinsics")
    rgbs.sort(key=lambda x: x[0])
    pairs = dict(associate([r[0] for r in rgbs], [d[0] for d in depths], max_dt)) if depths else {}
    info_stamps = np.array([i[0] for i in infos])
    stats = {"images": len(rgbs), "read": 0, "no_tf": 0, "no_depth": 0}
    frames, first_tf_error = [], None
    for i, (t, frame_id, rgb) in enumerate(rgbs):
        where = f"{path} {rgb_topic} @ {t:.6f}"
        K, ih, iw, rect = infos[int(np.argmin(np.abs(info_stamps - t)))][2]
        if (ih, iw) != rgb.shape[:2]:
            raise BagError(f"{where}: image is {rgb.shape[1]}x{rgb.shape[0]} but {info_topic} says {iw}x{ih}")
        depth = _depth_partner(depths, pairs.get(i), frame_id, rgb.shape[:2], where)
        stats["no_depth"] += int(depth is None and bool(depth_topic))
        try:
            T = tree.lookup(fixed_frame, frame_id, t)
        except TFError as exc:
            stats["no_tf"] += 1
            first_tf_error = first_tf_error or str(exc)
            continue
        if rect is not None:
            K, pixel_map = rect
            rgb, depth = remap_rgbd(rgb, depth, pixel_map)
        frames.append(Frame(rgb=rgb, K=K, T_wc=T, depth=depth, stamp=t, frame_id=frame_id))
    stats["read"] = len(frames)
    if report is not None:
        report.update(stats)
    if stats["no_tf"] or stats["no_depth"]:
        log.info("%s: read %d of %d images; %d without TF to %s (first: %s), %d without depth", path, len(frames), len(rgbs), stats["no_tf"], fixed_frame, first_tf_error, stats["no_depth"])
    if not frames:
        raise BagError(f"{path}: no image on {rgb_topic} could be posed in {fixed_frame!r}: {first_tf_error}")
    return frames


def _read_messages(path: Path, rgb_topic: str, depth_topic: str | None, info_topic: str, tf_tolerance: float, undistort: bool):
    """One pass over the bag: (TF tree, colour, depth, camera_info), each list of (stamp, frame_id,
    payload); camera_info payload (K, height, width, rectification or None). Checks topics and types."""
    ts = typestore()
    tree = TFTree(extrapolation_tolerance=tf_tolerance)
    rgbs, depths, infos = [], [], []
    maps: dict = {}  # camera_info calibration -> (K_rect, pixel_map)
    try:
        reader = Reader(path)
    except Exception as exc:  # rosbags raises its own error types for unreadable bags
        raise BagError(f"{path}: cannot open as a rosbag2 bag: {exc}") from exc
    with reader:
        have = {c.topic: c.msgtype for c in reader.connections}
        if reader.message_count == 0:
            raise BagError(f"{path}: the bag is empty (topics: {sorted(have) or 'none'})")
        wanted = {rgb_topic: IMAGE, info_topic: CAMERA_INFO}
        if depth_topic:
            wanted[depth_topic] = IMAGE
        for topic, msgtype in wanted.items():
            if topic not in have:
                listing = ", ".join(f"{t} [{m}]" for t, m in sorted(have.items()))
                raise BagError(f"{path}: topic {topic} not in the bag; it has: {listing}")
            if have[topic] != msgtype:
                raise BagError(f"{path}: topic {topic} has type {have[topic]}, expected {msgtype}")
        conns = [c for c in reader.connections if c.topic in wanted or c.topic in ("/tf", "/tf_static")]
        for conn, _, raw in reader.messages(connections=conns):
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            if conn.topic in ("/tf", "/tf_static"):
                _add_tf(tree, msg, conn.topic == "/tf_static", path)
                continue
            t = _sec(msg.header)
            where = f"{path} {conn.topic} @ {t:.6f}"
            if conn.topic == info_topic:
                K = np.array(msg.k, dtype=np.float64).reshape(3, 3)  # a copy: the CDR buffer is read-only
                infos.append((t, msg.header.frame_id, (K, int(msg.height), int(msg.width), _rectification(msg, K, where, maps) if undistort else None)))
                continue
            arr, kind = decode_image(msg, where)
            if conn.topic == rgb_topic and kind != "rgb":
                raise BagError(f"{where}: colour topic carries {msg.encoding} (a depth encoding)")
            if conn.topic != rgb_topic and kind != "depth":
                raise BagError(f"{where}: depth topic carries {msg.encoding}; expected one of {DEPTH_ENCODINGS}")
            (rgbs if conn.topic == rgb_topic else depths).append((t, msg.header.frame_id.lstrip("/"), arr))
    return tree, rgbs, depths, infos


def _depth_partner(depths: list, j: int | None, frame_id: str, hw: tuple[int, int], where: str) -> np.ndarray | None:
    """The depth image associated with a colour image (None without one); it must share its frame and size."""
    if j is None:
        return None
    _, d_frame, depth = depths[j]
    if d_frame != frame_id:
        raise BagError(f"{where}: depth frame {d_frame!r} differs from colour frame {frame_id!r}; depth must be aligned to colour")
    if depth.shape != hw:
        raise BagError(f"{where}: depth {depth.shape} does not match colour {hw}")
    return depth


def _rectification(msg, K: np.ndarray, where: str, cache: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """(K_rect, pixel_map) for a CameraInfo with lens distortion, None without (cache: calibration ->
    result, one per read_bag call: a camera_info per image, one map); BagError for an unsupported model."""
    d = tuple(float(x) for x in msg.d)
    if not any(d):
        return None
    h, w = int(msg.height), int(msg.width)
    key = (msg.distortion_model, d, tuple(msg.k), tuple(msg.r), tuple(msg.p), h, w)
    if key not in cache:
        try:
            lens = LensDistortion(msg.distortion_model, d)
        except ValueError as exc:
            raise BagError(f"{where}: {exc} (read with undistort=False to use the raw images as pinhole images)") from exc
        cache[key] = camera_info_rectification(K, lens, (h, w), msg.r, msg.p)
    return cache[key]


def _add_tf(tree: TFTree, msg, static: bool, path: Path) -> None:
    for tr in msg.transforms:
        parent, child, t = tr.header.frame_id.lstrip("/"), tr.child_frame_id.lstrip("/"), _sec(tr.header)
        r, q = tr.transform.translation, tr.transform.rotation
        try:
            tree.set_transform_tq(parent, child, t, [r.x, r.y, r.z], [q.x, q.y, q.z, q.w], static=static)
        except ValueError as exc:
            raise BagError(f"{path} {'/tf_static' if static else '/tf'} @ {t:.6f}: bad transform {parent} -> {child}: {exc}") from exc
