"""Parameters: config/mvgd.yaml mirrors the declarations; validation at startup and at runtime; launch file."""
import py_compile
import re
from pathlib import Path

import pytest
import yaml

rclpy = pytest.importorskip("rclpy")
from rclpy.exceptions import InvalidParameterValueException  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from mvgd_ros import params  # noqa: E402
from ros_harness import make_tiny_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _yaml_params() -> dict:
    doc = yaml.safe_load((ROOT / "config" / "mvgd.yaml").read_text())
    assert list(doc) == ["/**"], "parameters apply to the node under any name"
    return doc["/**"]["ros__parameters"]


def test_yaml_mirrors_the_declarations():
    values = _yaml_params()
    assert list(values) == [s.name for s in params.SPECS]  # same names, same order
    for s in params.SPECS:
        assert values[s.name] == s.default, s.name
        assert type(values[s.name]) is type(s.default), f"{s.name}: YAML type differs (write floats with a decimal point)"


def test_every_spec_is_described_and_its_default_valid():
    for s in params.SPECS:
        assert len(s.description) > 20, s.name
        assert params.check_value(s.name, s.default) is None, s.name
        if s.range is not None:
            assert s.range[0] <= s.default <= s.range[1], s.name
        d = params.descriptor(s)
        assert d.read_only == s.read_only and d.type == int(s.type)


@pytest.fixture
def ctx():
    c = rclpy.Context()
    rclpy.init(context=c)
    yield c
    rclpy.try_shutdown(context=c)


def _node(ctx, **overrides):
    node = rclpy.create_node("param_probe", context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()])
    return node


def test_declared_values_and_yaml_loaded_overrides(ctx, tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    virtual_frames: []\n    virtual_offsets: [0.0, 0.1, 0.0, 0.0, 0.0, 1.0]\n    resolution: [24, 32]\n")
    c = rclpy.Context()
    rclpy.init(context=c, args=["--ros-args", "--params-file", str(f)])
    try:
        node = rclpy.create_node("param_probe", context=c)
        p = params.declare(node)
        assert p.virtual_frames == [] and p.virtual_offsets == [0.0, 0.1, 0.0, 0.0, 0.0, 1.0] and p.resolution == [24, 32]
        assert p.fixed_frame == "odom" and p.steps == 1
    finally:
        rclpy.try_shutdown(context=c)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"steps": 0}, "steps out of range"),
        ({"tf_wait_s": -1.0}, "tf_wait_s out of range"),
        ({"device": "gpu"}, "device must be one of"),
        ({"camera_frame_convention": "sideways"}, "camera_frame_convention must be one of"),
        ({"resolution": [32]}, "resolution must be"),
        ({"resolution": [0, 32]}, "resolution must be"),
        ({"virtual_offsets": [1.0, 2.0]}, "6 numbers"),
        ({"refine_hypotheses": 8}, r"0 \(auto\) or odd"),
        ({"refine_hypotheses": 1}, r"0 \(auto\) or odd"),
        ({"refine_hypotheses": 33}, "refine_hypotheses out of range"),
    ],
)
def test_bad_startup_values_are_clear_errors(ctx, override, message):
    with pytest.raises(InvalidParameterValueException, match=message):
        params.declare(_node(ctx, **override))


def test_runtime_changes_mutable_accepted_read_only_rejected(ctx):
    node = _node(ctx)
    seen = []
    params.declare(node, on_change=seen.append)
    ok = node.set_parameters([Parameter("keyframe_pose_distance", value=0.5), Parameter("steps", value=3)])
    assert all(r.successful for r in ok)
    assert seen[-1].keyframe_pose_distance == 0.5 and seen[-1].steps == 3
    for name, value in [("fixed_frame", "map"), ("checkpoint", "/x.pt"), ("resolution", [8, 8])]:
        r = node.set_parameters([Parameter(name, value=value)])[0]
        assert not r.successful and "read-only" in r.reason, name
    r = node.set_parameters([Parameter("steps", value=5000)])[0]
    assert not r.successful and "out of range" in r.reason
    assert params.read(node).steps == 3


def test_missing_checkpoint_is_a_clear_startup_error(ctx, tmp_path):
    from mvgd_ros.model import StartupError
    from mvgd_ros.node import MVGDNode

    with pytest.raises(StartupError, match=r"no checkpoint found .*training/train.py --config training/configs/default.yaml"):
        MVGDNode(context=ctx, parameter_overrides=[Parameter("checkpoint", value=str(tmp_path / "none.pt"))])
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(StartupError, match="cannot load checkpoint"):
        MVGDNode(context=ctx, parameter_overrides=[Parameter("checkpoint", value=str(bad))])


def test_refine_hypotheses_reaches_the_live_camera_refinement_only(tmp_path, monkeypatch):
    """Given: that many depths at the live camera, virtual views keep theirs. 0 (the default):
    11 on CUDA, 7 on the CPU."""
    import torch

    from mvgd_core.inference import MVGDPredictor
    from mvgd_ros.model import load_predictor

    ckpt = make_tiny_checkpoint(tmp_path / "tiny.pt")
    pred = load_predictor(str(ckpt), "cpu", 1, refine_hypotheses=11)
    assert pred.refine.hypotheses == 11 and pred.refine.novel_hypotheses == 7
    assert params.BY_NAME["refine_hypotheses"].default == 0 and load_predictor(str(ckpt), "cpu", 1).refine.hypotheses == 7
    real = MVGDPredictor.from_checkpoint

    def on_cuda(*a, **k):  # the predictor as a CUDA machine builds it (no GPU here: only its device differs)
        p = real(*a, **k)
        p.device = torch.device("cuda", 0)
        return p

    monkeypatch.setattr(MVGDPredictor, "from_checkpoint", on_cuda)
    assert load_predictor(str(ckpt), "cpu", 1).refine.hypotheses == 11
    assert load_predictor(str(ckpt), "cpu", 1, refine_hypotheses=7).refine.hypotheses == 7


def test_default_checkpoint_resolves_from_the_source_tree(tmp_path, monkeypatch):
    from mvgd_ros import model

    assert model.default_candidates()[0] == ROOT / "models" / model.DEFAULT_NAME  # source tree first
    fake = tmp_path / "models" / model.DEFAULT_NAME
    make_tiny_checkpoint(fake)
    monkeypatch.setattr(model, "default_candidates", lambda: [tmp_path / "nope.pt", fake])
    assert model.resolve_checkpoint("") == fake
    assert model.resolve_checkpoint(str(fake)) == fake


def test_launch_file_compiles_and_points_at_real_things():
    launch = ROOT / "launch" / "mvgd.launch.py"
    py_compile.compile(str(launch), doraise=True)
    text = launch.read_text()
    assert re.search(r'executable="mvgd_node"', text) and re.search(r'package="mvgd_ros"', text)
    assert '"config", "mvgd.yaml"' in text and (ROOT / "config" / "mvgd.yaml").is_file()
    setup = (ROOT / "setup.py").read_text()
    assert '"mvgd_node = mvgd_ros.node:main"' in setup
    assert 'glob("launch/*.launch.py")' in setup and 'glob("config/*.yaml")' in setup  # installed to share/
    for name in re.findall(r'"(\w+)"', text.split("OVERRIDABLE = ")[1].split("\n")[0]):
        assert name in params.BY_NAME, f"launch overrides unknown parameter {name}"


def test_every_parameter_is_documented():
    doc = (ROOT / "docs" / "ROS_NODE.md").read_text()
    missing = [s.name for s in params.SPECS if f"`{s.name}`" not in doc]
    assert not missing, f"add to docs/ROS_NODE.md: {missing}"


def test_torch_threads_sets_the_inference_threads(ctx, tmp_path):
    """torch_threads is applied on the inference thread, where the model runs (OpenMP's thread
    count is per calling thread)."""
    import torch

    from mvgd_ros.node import MVGDNode

    ckpt = make_tiny_checkpoint(tmp_path / "tiny.pt")
    before = torch.get_num_threads()
    try:
        node = MVGDNode(context=ctx, parameter_overrides=[Parameter("checkpoint", value=str(ckpt)), Parameter("torch_threads", value=1)])
        assert node.worker.call(torch.get_num_threads) == 1
        node.destroy_node()
        torch.set_num_threads(2)
        node = MVGDNode(context=ctx, parameter_overrides=[Parameter("checkpoint", value=str(ckpt))])  # 0: left as it is
        assert node.worker.call(torch.get_num_threads) == 2
        node.destroy_node()
    finally:
        torch.set_num_threads(before)


def test_keep_freed_memory_is_applied_at_start_up_unless_off(ctx, tmp_path, monkeypatch):
    """On by default: the node sets glibc's allocator up before the model loads; false leaves it alone."""
    import mvgd_ros.node as node_module

    calls = []
    monkeypatch.setattr(node_module, "keep_freed_memory", lambda: calls.append(1) or True)
    ckpt = make_tiny_checkpoint(tmp_path / "tiny.pt")
    assert params.BY_NAME["keep_freed_memory"].default is True
    node_module.MVGDNode(context=ctx, parameter_overrides=[Parameter("checkpoint", value=str(ckpt))]).destroy_node()
    assert calls == [1]
    node_module.MVGDNode(context=ctx, parameter_overrides=[Parameter("checkpoint", value=str(ckpt)),
                                                           Parameter("keep_freed_memory", value=False)]).destroy_node()
    assert calls == [1]


def test_fuse_splat_radius_reaches_the_virtual_views_fusion(ctx, tmp_path):
    """Read-only, 0 by default (the fusion before stop 30); the node's predictor fuses with the
    radius given at start-up; its descriptor allows 0..3."""
    from mvgd_ros.model import load_predictor
    from mvgd_ros.node import MVGDNode

    ckpt = make_tiny_checkpoint(tmp_path / "tiny.pt")
    assert params.BY_NAME["fuse_splat_radius"].default == 0 and load_predictor(str(ckpt), "cpu", 1).fusion.splat_radius == 0
    node = MVGDNode(context=ctx, parameter_overrides=[Parameter("checkpoint", value=str(ckpt)), Parameter("fuse_splat_radius", value=2),
                                                      Parameter("warm_up", value=False)])
    try:
        assert node.predictor.fusion.splat_radius == 2 and node.predictor.fusion.enabled
        r = node.set_parameters([Parameter("fuse_splat_radius", value=1)])[0]
        assert not r.successful and "read-only" in r.reason
    finally:
        node.destroy_node()
    rng = params.descriptor(params.BY_NAME["fuse_splat_radius"]).integer_range[0]
    assert (rng.from_value, rng.to_value) == (0, 3)
