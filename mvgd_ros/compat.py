"""rclpy API differences between Humble, Jazzy and Kilted, chosen by feature detection.

Humble's rclpy (3.3) lacks `Node.add_post_set_parameters_callback` (added in Iron, rclpy #966);
params.declare handles that one. `resolve_topic_name` is used when present; without it a
relative name is returned unchanged (remap the full derived name then, e.g. image/compressed).
"""
from __future__ import annotations


def resolved_topic(node, name: str) -> str:
    """`name` after namespace and remapping rules, when this rclpy can say; else `name`."""
    resolve = getattr(node, "resolve_topic_name", None)
    return resolve(name) if resolve is not None else name
