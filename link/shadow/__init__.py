"""Shadow mode: observe legacy APIs through Envoy, learn their contracts, change nothing.

Capture (:mod:`.capture`) -> masked samples (:mod:`.sample`, :mod:`.store`) ->
inference (:mod:`.infer`) -> drafts (:mod:`.output`) -> human review and
promotion (:mod:`.review`). ``stoa-link serve --mode=shadow --target URL
--output DIR`` runs it (:mod:`.runner`).
"""

from link.shadow.infer import Operation, infer_operations
from link.shadow.sample import Observation, Sample, SampleBuilder
from link.shadow.shape import Shape
from link.shadow.store import SampleStore

__all__ = ["Observation", "Operation", "Sample", "SampleBuilder", "SampleStore", "Shape", "infer_operations"]
