"""The launch file, run against small stand-ins for launch / launch_ros (not installable here):
its arguments, the remappings it builds (namespaced TF), the log level and parameter files."""
import sys
import types
from pathlib import Path

import pytest

from script_loader import load_script


class _Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _fake_modules(monkeypatch, share: Path):
    launch = types.ModuleType("launch")
    launch.LaunchDescription = lambda entities: list(entities)
    actions = types.ModuleType("launch.actions")
    actions.DeclareLaunchArgument = type("DeclareLaunchArgument", (_Recorder,), {})
    actions.OpaqueFunction = lambda function: function
    subs = types.ModuleType("launch.substitutions")

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context[self.name]

    subs.LaunchConfiguration = LaunchConfiguration
    launch_ros = types.ModuleType("launch_ros")
    ros_actions = types.ModuleType("launch_ros.actions")
    ros_actions.Node = type("Node", (_Recorder,), {})
    ament = types.ModuleType("ament_index_python.packages")
    ament.get_package_share_directory = lambda pkg: str(share)
    for name, mod in {"launch": launch, "launch.actions": actions, "launch.substitutions": subs, "launch_ros": launch_ros,
                      "launch_ros.actions": ros_actions, "ament_index_python": types.ModuleType("ament_index_python"),
                      "ament_index_python.packages": ament}.items():
        monkeypatch.setitem(sys.modules, name, mod)


@pytest.fixture
def launch_file(monkeypatch, tmp_path):
    _fake_modules(monkeypatch, tmp_path / "share")
    return load_script("launch/mvgd.launch.py", "mvgd_launch")


def _run(mod, **given):
    entities = mod.generate_launch_description()
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities if hasattr(e, "args")}
    context = {**declared, **given}
    (node,) = entities[-1](context)
    return declared, node.kwargs


def test_defaults_global_tf_and_info_log_level(launch_file, tmp_path):
    declared, node = _run(launch_file)
    assert {"log_level", "tf_topic", "tf_static_topic", "image", "camera_info", "namespace"} <= set(declared)
    assert node["executable"] == "mvgd_node" and node["package"] == "mvgd_ros"
    assert node["parameters"][0] == str(tmp_path / "share" / "config" / "mvgd.yaml")
    assert dict(node["remappings"]) == {"image": "/camera/color/image_raw", "camera_info": "/camera/color/camera_info"}  # /tf as is
    assert node["arguments"] == ["--ros-args", "--log-level", "info"]


def test_namespaced_robot_tf_remaps_log_level_and_overrides(launch_file):
    _, node = _run(launch_file, namespace="robot1", tf_topic="tf", tf_static_topic="tf_static", log_level="debug", fixed_frame="map",
                   image="front/image_raw")
    remaps = dict(node["remappings"])
    assert remaps["/tf"] == "tf" and remaps["/tf_static"] == "tf_static" and remaps["image"] == "front/image_raw"
    assert node["namespace"] == "robot1" and node["arguments"][-1] == "debug"
    assert node["parameters"][1] == {"fixed_frame": "map", "use_sim_time": False}


def test_integer_arguments_are_passed_as_integers_only_when_given(launch_file):
    """rclpy refuses a string for an integer parameter: the launch arguments are converted."""
    _, node = _run(launch_file, lookahead_frames="2", refine_hypotheses="11")
    assert node["parameters"][1] == {"lookahead_frames": 2, "refine_hypotheses": 11, "use_sim_time": False}
    _, node = _run(launch_file)
    assert "lookahead_frames" not in node["parameters"][1] and "refine_hypotheses" not in node["parameters"][1]


def _share_with_rviz(tmp_path):
    import shutil

    (tmp_path / "share" / "config").mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(__file__).resolve().parents[1] / "config" / "mvgd.rviz", tmp_path / "share" / "config" / "mvgd.rviz")


def test_rviz_is_started_only_when_asked_with_topics_where_the_node_publishes(launch_file, tmp_path, monkeypatch):
    import yaml

    _share_with_rviz(tmp_path)
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "ros_home"))
    entities = launch_file.generate_launch_description()
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities if hasattr(e, "args")}
    assert declared["rviz"] == "false" and len(entities[-1](declared)) == 1
    params = tmp_path / "robot.yaml"
    params.write_text("/**:\n  ros__parameters:\n    fixed_frame: map\n    image_transport: compressed\n")
    context = {**declared, "rviz": "true", "namespace": "robot1", "image": "front/image_raw", "tf_topic": "tf",
               "tf_static_topic": "tf_static", "params_file": str(params)}
    node, rviz = entities[-1](context)
    assert rviz.kwargs["executable"] == "rviz2" and rviz.kwargs["namespace"] == "robot1"
    args = rviz.kwargs["arguments"]
    assert args[args.index("-f") + 1] == "map"  # the node's fixed frame, read from its parameter file
    assert dict(rviz.kwargs["remappings"]) == {"/tf": "tf", "/tf_static": "tf_static"}
    cfg = yaml.safe_load(Path(args[args.index("-d") + 1]).read_text())
    topics = {d["Name"]: d["Topic"]["Value"] for d in cfg["Visualization Manager"]["Displays"] if "Topic" in d}
    assert topics["camera image (input)"] == "/robot1/front/image_raw/compressed"  # the node reads the compressed stream
    assert {t for n, t in topics.items() if n.startswith("MVGD")} == {"/robot1/mvgd/depth/image", "/robot1/mvgd/depth/confidence",
                                                                     "/robot1/mvgd/rgb/image", "/robot1/mvgd/points"}
    context.update(fixed_frame="odom_override", namespace="", image="/cam/image", params_file=str(tmp_path / "missing.yaml"))
    _, rviz = entities[-1](context)
    args = rviz.kwargs["arguments"]
    assert args[args.index("-f") + 1] == "odom_override"
    assert "Value: /cam/image\n" in Path(args[args.index("-d") + 1]).read_text()
    # one config per namespace under $ROS_HOME, rewritten on each launch: nothing piles up
    entities[-1](context)
    context.update(namespace="robot1")
    entities[-1](context)
    assert sorted(p.name for p in (tmp_path / "ros_home" / "mvgd_ros").iterdir()) == ["mvgd_robot1.rviz", "mvgd_root.rviz"]


def test_shipped_rviz_config_shows_only_topics_the_node_documents():
    import yaml

    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "config" / "mvgd.rviz").read_text())
    assert cfg["Visualization Manager"]["Global Options"]["Fixed Frame"] == "odom"  # config/mvgd.yaml's default
    doc = (root / "docs" / "ROS_NODE.md").read_text()
    outputs = {line.split("`")[1] for line in doc.splitlines() if line.startswith("| `mvgd/") and "| out |" in line}
    shown = {d["Topic"]["Value"].lstrip("/") for d in cfg["Visualization Manager"]["Displays"] if "Topic" in d}
    assert shown - {"camera/color/image_raw"} <= outputs, shown - outputs
    assert {"mvgd/depth/image", "mvgd/points"} <= shown
