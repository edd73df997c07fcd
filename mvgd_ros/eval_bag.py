"""mvgd-eval's view of the bag: which topics, the ground-truth frames, the hold-outs, and the
messages to play into the node (image, camera_info, TF). No rclpy: the bag is read with
rosbags (mvgd_core.data.rosbag_io, mvgd_ros.player).
"""
from __future__ import annotations

from pathlib import Path

from mvgd_core.data.types import Frame
from mvgd_ros.eval_scoring import holdout_indices


class EvalError(RuntimeError):
    """A problem the user must fix (bag, topics, node); the message says what and how."""


def detect_topics(bag, args):
    """Fill in image/camera_info/depth topics from the bag when not given."""
    from mvgd_ros.player import bag_topics

    topics = bag_topics(bag)
    images = [t for t, (ty, n) in topics.items() if ty == "sensor_msgs/msg/Image" and n > 0]
    if not images:
        raise EvalError(f"bag {bag} has no sensor_msgs/Image topic with messages; topics: {sorted(topics)}")
    if args.image_topic is None:
        colour = [t for t in images if "depth" not in t]
        if not colour:
            raise EvalError(f"cannot tell which image topic is the colour camera among {images}; pass --image-topic")
        args.image_topic = colour[0]
    elif args.image_topic not in topics:
        raise EvalError(f"--image-topic {args.image_topic} is not in the bag; image topics: {images}")
    if args.depth_topic is None:
        depth = [t for t in images if "depth" in t]
        args.depth_topic = depth[0] if depth else ""
    elif args.depth_topic and args.depth_topic not in topics:
        raise EvalError(f"--depth-topic {args.depth_topic} is not in the bag; image topics: {images}")
    if args.camera_info_topic is None:
        ns = args.image_topic.rsplit("/", 1)[0]
        infos = [t for t, (ty, _) in topics.items() if ty == "sensor_msgs/msg/CameraInfo"]
        same = [t for t in infos if t.rsplit("/", 1)[0] == ns]
        if not (same or infos):
            raise EvalError(f"bag {bag} has no sensor_msgs/CameraInfo topic; the node needs intrinsics")
        args.camera_info_topic = (same or infos)[0]
    return topics


def ground_truth(bag: Path, args, notes: list[str]) -> tuple[dict, list[Frame], set[int]]:
    """(bag topics, ground-truth frames, held-out frame indices); EvalError for unusable bags."""
    from mvgd_core.data.rosbag_io import BagError as RosbagIOError
    from mvgd_core.data.rosbag_io import read_bag
    from mvgd_ros.player import BagError

    try:
        topics = detect_topics(bag, args)
    except BagError as exc:
        raise EvalError(str(exc)) from exc
    try:
        frames = read_bag(bag, rgb_topic=args.image_topic, depth_topic=args.depth_topic or None, info_topic=args.camera_info_topic, fixed_frame=args.world_frame)
    except RosbagIOError as exc:
        raise EvalError(str(exc)) from exc
    except ValueError as exc:  # a Frame refused the bag's data, e.g. CameraInfo K all zero
        raise EvalError(f"{bag}: cannot use the ground truth on {args.image_topic} / {args.camera_info_topic}: {exc}. "
                        "A CameraInfo whose K is all zero comes from an uncalibrated camera: calibrate it "
                        "(camera_calibration) or fix the driver's camera_info, then record again.") from exc
    if not frames:
        raise EvalError(f"no usable frames on {args.image_topic} (need image + camera_info + TF to {args.world_frame})")
    if args.max_frames:
        frames = frames[: args.max_frames]
    if not any(f.depth is not None for f in frames):
        notes.append("no depth ground truth in the bag (no depth topic): depth metrics and the reprojection baseline are skipped; RGB of held-out views is still scored")
    held = holdout_indices(len(frames), args.holdout_every, args.warmup)
    if not args.rgb_out and held:
        held = set()
        notes.append("no RGB output topic configured: no held-out novel views")
    return topics, frames, held


def messages_to_play(bag: Path, topics: dict, frames: list[Frame], args) -> list:
    """Image, camera_info and TF messages up to the last evaluated frame (depth and the rest are not node inputs)."""
    from mvgd_ros.player import read_messages

    last_stamp = frames[-1].stamp
    play_topics = [t for t in (args.image_topic, args.camera_info_topic, "/tf", "/tf_static") if t in topics]
    msgs = [m for m in read_messages(bag, play_topics) if m.stamp is None or m.stamp <= last_stamp + 1e-6 or m.topic not in (args.image_topic, args.camera_info_topic)]
    return [m for m in msgs if m.bag_ns <= int((last_stamp + 5.0) * 1e9) or m.topic == "/tf_static"] if args.max_frames else msgs
