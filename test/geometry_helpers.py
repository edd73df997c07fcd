"""Small geometry fixtures shared by the core tests (imported as a sibling module by pytest)."""
import numpy as np


def random_rigid(seed: int = 0, translation_std: float = 10.0) -> np.ndarray:
    """A random proper rigid transform (4, 4) float64: rotation from QR, det +1."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    Q *= np.sign(np.linalg.det(Q))
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = Q, rng.normal(size=3) * translation_std
    return T
