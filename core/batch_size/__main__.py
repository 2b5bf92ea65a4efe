"""Entry of a CPU probe process (``python -m core.batch_size``): see core/batch_size/probes.py."""
from core.batch_size.probes import probe_child

probe_child()
