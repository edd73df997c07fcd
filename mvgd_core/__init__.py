"""mvgd_core: Multi-View Geometric Diffusion in pure PyTorch + NumPy (no ROS imports)."""
__version__ = "0.1.0"
