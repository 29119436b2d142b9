"""vaegaps: approximation and amortization gaps of VAEs (Cremer, Li & Duvenaud, ICML 2018)."""

__version__ = "0.1.0"
