"""Lowering targets. Installed as ``archc.backends``; each target lives in its own sub-package."""
