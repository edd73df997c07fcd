"""ament_python package `mvgd_ros`; installs `mvgd_core` (pure PyTorch) and `mvgd_ros` (ROS 2 adapter).

Builds with colcon on a robot and installs with `pip install -e .` elsewhere.
"""
from glob import glob

from setuptools import find_packages, setup

package_name = "mvgd_ros"

setup(
    name=package_name,
    version="0.2.0",
    packages=find_packages(include=["mvgd_core", "mvgd_core.*", "mvgd_ros", "mvgd_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.xml") + glob("config/*.rviz")),
        ("share/" + package_name + "/models", glob("models/*.pt") + glob("models/*.md")),
    ],
    package_data={"mvgd_core": ["configs/*.yaml"]},
    # OpenCV is an extra: on a ROS install python3-opencv (package.xml) provides cv2, and pip's
    # opencv-python-headless beside it would shadow it. `make venv` installs it from requirements.txt;
    # without ROS: pip install -e .[opencv]
    install_requires=["setuptools", "numpy", "torch", "pyyaml", "tqdm", "rosbags"],
    extras_require={"opencv": ["opencv-python-headless"]},
    zip_safe=True,
    maintainer="mvgd_ros maintainers",
    maintainer_email="mvgd-ros@example.com",
    description="Multi-View Geometric Diffusion for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            # Filled in by the node, trainer and evaluation work; each maps to a `main()`.
            "mvgd-train = mvgd_core.train:main",
            "mvgd_node = mvgd_ros.node:main",
            "mvgd-eval = mvgd_ros.eval:main",
            "mvgd-play = mvgd_ros.player:main",
            "mvgd-demo = mvgd_ros.demo:main",
        ],
    },
)
