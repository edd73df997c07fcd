"""Launch mvgd_node with config/mvgd.yaml.

    ros2 launch mvgd_ros mvgd.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info fixed_frame:=map

`image` / `camera_info` remap the node's relative input topics; `params_file` replaces the
shipped defaults; `checkpoint`, `device`, `fixed_frame`, `lookahead_frames` and `refine_hypotheses`
override single parameters when given (empty keeps the file's value; `lookahead_frames:=2` for
mapping: depth and target views two frames late, from views on both sides of the path;
`refine_hypotheses:=11` forces the finer refinement on a CPU too); `namespace` moves the node and its outputs
(mvgd/depth/image -> <namespace>/mvgd/depth/image); `log_level` sets the node's logger level.

`rviz:=true` also starts RViz 2 with config/mvgd.rviz (camera image, depth, virtual view, point
cloud, TF), its topics moved to `namespace` and `image` and its fixed frame the node's; it needs
the rviz2 package (not a dependency: robots are often headless).

Namespaced robots (Nav2's multi-robot convention) keep TF in their namespace: pass
`tf_topic:=tf tf_static_topic:=tf_static` (relative, so /robot1/tf) or absolute names; the
node's TF input and its /tf, /tf_static output (optical and virtual frames) follow.
"""
import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

OVERRIDABLE = {"checkpoint": str, "device": str, "fixed_frame": str, "lookahead_frames": int, "refine_hypotheses": int}  # name: parameter type


def _resolve(topic: str, namespace: str) -> str:
    """A topic name as the node in `namespace` resolves it (absolute names stay)."""
    return topic if topic.startswith("/") else "/" + "/".join(p for p in (namespace.strip("/"), topic.strip("/")) if p)


def _file_param(params_file: str, name: str, default: str) -> str:
    """A node parameter's value in the parameter file (any node key), else `default` (the node's)."""
    try:
        with open(params_file) as f:
            doc = yaml.safe_load(f) or {}
        return next(str(v["ros__parameters"][name]) for v in doc.values() if name in v.get("ros__parameters", {}))
    except (OSError, StopIteration, AttributeError, TypeError, yaml.YAMLError):
        return default


def _rviz_config_path(namespace: str) -> str:
    """Where the rewritten RViz config goes: one file per namespace under $ROS_HOME (default ~/.ros),
    replaced on each launch, so launches do not pile up copies in /tmp."""
    home = os.environ.get("ROS_HOME") or os.path.join(os.path.expanduser("~"), ".ros")
    name = "_".join(p for p in namespace.strip("/").split("/") if p) or "root"
    return os.path.join(home, "mvgd_ros", f"mvgd_{name}.rviz")


def _rviz(value, remappings):
    """RViz 2 with config/mvgd.rviz, its topics where this launch puts them (written to `_rviz_config_path`)."""
    ns = value("namespace")
    with open(os.path.join(get_package_share_directory("mvgd_ros"), "config", "mvgd.rviz")) as f:
        text = f.read()
    image = _resolve(value("image"), ns)
    if _file_param(value("params_file"), "image_transport", "raw") == "compressed":
        image += "/compressed"  # RViz's image display picks the transport from the topic's suffix
    text = text.replace("Value: /mvgd/", f"Value: {_resolve('mvgd', ns)}/").replace("Value: /camera/color/image_raw", f"Value: {image}")
    path = _rviz_config_path(ns)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + f".{os.getpid()}", "w") as f:  # then an atomic replace: two launches never read half a file
        f.write(text)
    os.replace(path + f".{os.getpid()}", path)
    return Node(package="rviz2", executable="rviz2", name="mvgd_rviz", namespace=ns, output="screen",
                arguments=["-d", path, "-f", value("fixed_frame") or _file_param(value("params_file"), "fixed_frame", "odom")],
                parameters=[{"use_sim_time": value("use_sim_time").lower() == "true"}],
                remappings=[r for r in remappings if r[0] in ("/tf", "/tf_static")])


def _node(context):
    """The node, with only the single-parameter overrides that were actually given (and RViz when asked)."""
    value = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    overrides = {name: kind(value(name)) for name, kind in OVERRIDABLE.items() if value(name)}
    overrides["use_sim_time"] = value("use_sim_time").lower() == "true"
    remappings = [("image", value("image")), ("camera_info", value("camera_info"))]
    remappings += [(src, dst) for src, dst in (("/tf", value("tf_topic")), ("/tf_static", value("tf_static_topic"))) if dst != src]
    return [
        Node(
            package="mvgd_ros",
            executable="mvgd_node",
            name="mvgd_node",
            namespace=value("namespace"),
            output="screen",
            emulate_tty=True,
            parameters=[value("params_file"), overrides],
            remappings=remappings,
            arguments=["--ros-args", "--log-level", value("log_level")],  # `ros_arguments` is not in every distro's launch_ros
        )
    ] + ([_rviz(value, remappings)] if value("rviz").lower() == "true" else [])


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("mvgd_ros"), "config", "mvgd.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("image", default_value="/camera/color/image_raw", description="input image topic (with image_transport:=compressed, the base topic)"),
        DeclareLaunchArgument("camera_info", default_value="/camera/color/camera_info", description="input camera_info topic"),
        DeclareLaunchArgument("params_file", default_value=default_params, description="node parameters (YAML)"),
        DeclareLaunchArgument("checkpoint", default_value="", description="model checkpoint (.pt); empty: the file's value"),
        DeclareLaunchArgument("device", default_value="", description="auto, cuda or cpu; empty: the file's value"),
        DeclareLaunchArgument("fixed_frame", default_value="", description="odom or map; empty: the file's value"),
        DeclareLaunchArgument("lookahead_frames", default_value="", description="fixed-lag depth for mapping, e.g. 2; empty: the file's value (0: live)"),
        DeclareLaunchArgument("refine_hypotheses", default_value="", description="depths the refinement tries per pixel (odd); empty: the file's value (0: auto, 11 on CUDA, 7 on the CPU)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its outputs"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="true when playing a bag with --clock"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error or fatal"),
        DeclareLaunchArgument("tf_topic", default_value="/tf", description="TF topic (tf for a namespaced robot's <namespace>/tf)"),
        DeclareLaunchArgument("tf_static_topic", default_value="/tf_static", description="static TF topic (tf_static for <namespace>/tf_static)"),
        DeclareLaunchArgument("rviz", default_value="false", description="true: also start RViz 2 with config/mvgd.rviz"),
        OpaqueFunction(function=_node),
    ])
