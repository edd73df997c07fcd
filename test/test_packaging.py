"""package.xml declares what the code really imports; setup.py leaves OpenCV to the distro on a
ROS install (an extra), while requirements.txt (`make venv`) still pins it."""
import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# ROS packages (rosdep keys) a file here could import; python3-* keys are checked separately.
ROS_PACKAGES = {"rclpy", "rcl_interfaces", "builtin_interfaces", "sensor_msgs", "sensor_msgs_py", "geometry_msgs", "std_msgs",
                "std_srvs", "diagnostic_msgs", "diagnostic_updater", "tf2_ros", "tf2_msgs", "tf2_py", "nav_msgs", "cv_bridge",
                "image_transport", "message_filters", "ament_index_python", "launch", "launch_ros", "rosbag2_py"}


def _imports(paths) -> set[str]:
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def _exec_depends() -> set[str]:
    return {e.text for e in ET.parse(ROOT / "package.xml").getroot().iter("exec_depend")}


def test_package_xml_declares_exactly_the_ros_packages_the_node_uses():
    used = _imports([*sorted((ROOT / "mvgd_ros").glob("*.py")), *sorted((ROOT / "launch").glob("*.py"))]) & ROS_PACKAGES
    declared = _exec_depends() & ROS_PACKAGES
    assert used - declared == set(), f"imported but not in package.xml: {sorted(used - declared)}"
    assert declared - used == set(), f"declared but never imported: {sorted(declared - used)}"
    assert {"cv_bridge", "nav_msgs"}.isdisjoint(_exec_depends())
    assert {"python3-opencv", "python3-numpy", "python3-yaml", "python3-tqdm"} <= _exec_depends()


def test_opencv_is_an_extra_and_make_venv_still_installs_it():
    setup = (ROOT / "setup.py").read_text()
    install_requires = re.search(r"install_requires=\[(.*?)\]", setup, re.S).group(1)
    assert "opencv" not in install_requires  # would shadow python3-opencv on a robot
    assert re.search(r'extras_require=\{"opencv": \["opencv-python-headless"\]\}', setup)
    reqs = (ROOT / "requirements.txt").read_text()
    assert re.search(r"^opencv-python-headless==", reqs, re.M) and "ros-nav-msgs" not in reqs
    assert "-r requirements.txt" in (ROOT / "Makefile").read_text()


def test_readme_robot_instructions_work_under_pep668():
    readme = (ROOT / "README.md").read_text()
    robot = readme[readme.index("## Using it on a robot"):readme.index("## Evaluating on a rosbag")]
    assert "venv --system-site-packages" in robot and "COLCON_IGNORE" in robot and "rosdep install" in robot
    commands = [line.split("#")[0] for line in robot.split("```bash")[1].split("```")[0].splitlines() if not line.startswith("#")]
    pip_lines = [line for line in commands if re.search(r"\bpip install\b", line)]
    assert pip_lines and all("activate" in line or ".venv" in line for line in pip_lines), pip_lines  # never into the system Python
