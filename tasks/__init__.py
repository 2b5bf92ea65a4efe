"""The two tracks: vesuvius/ and arc_guide/. Each registers in core/registry.py."""
