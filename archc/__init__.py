"""archc: a declarative graph compiler and architecture-search engine for vision networks."""

__version__ = "0.1.0"
