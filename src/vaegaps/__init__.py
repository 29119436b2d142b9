"""vaegaps: approximation and amortization gaps of VAEs (Cremer, Li & Duvenaud, ICML 2018)."""

__version__ = "0.1.0"

# Measuring your own VAE (docs/method.md §11). Imported on first use: `import vaegaps` (and the
# Snakefile's torch-free `vaegaps.config`) must not import torch.
_USER_API = ("measure", "refine", "certify", "summary", "refinement_summary")


def __getattr__(name):
    if name in _USER_API:
        from importlib import import_module

        module = ".user_tables" if name in ("summary", "refinement_summary") else ".user_eval"
        return getattr(import_module(module, __name__), name)
    raise AttributeError(f"module 'vaegaps' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_USER_API])
