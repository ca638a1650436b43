"""A noise source with known draws, to check a stochastic step's noise terms to round-off (a
moment test sees a noise coefficient only to a few per cent)."""

from __future__ import annotations

from flowrestore.integrate import GeneratorNoise


class FixedNoise(GeneratorNoise):
    """Every normal draw is the tensor ``z`` (in the requested dtype and device)."""

    def __init__(self, z):
        super().__init__(None)
        self.z = z

    def normal(self, like, index=None):
        """``z``."""
        return self.z.to(like)
