"""The registry fed by a Kubernetes watch on the Tool, ToolSet, Resource and Prompt custom resources.

One module per job:

- :mod:`~link.registry.kubernetes.api`: the API client and the resources' names;
- :mod:`~link.registry.kubernetes.watch`: one list/watch loop per kind and namespace
  (list, watch from the list's resourceVersion with bookmarks, re-list on
  ``410 Gone``, resume after an error behind the shared backoff);
- :mod:`~link.registry.kubernetes.status`: the status a resource should carry after
  Link's verdict (``ready``, ``message``, ``observedGeneration``, a ``Ready``
  condition) and a ToolSet's federation status;
- :mod:`~link.registry.kubernetes.status_writer`: the thread writing those patches,
  only when the status a resource carries differs (so the ``MODIFIED`` event of
  our own write causes no other write);
- :mod:`~link.registry.kubernetes.federation`: what federation learnt, written back;
- :mod:`~link.registry.kubernetes.source`: :class:`KubernetesSource`, the component
  that starts and stops the threads and tells readiness.

A refused resource never reaches the registry; its previous good version stays
served. The registry is fed from the worker threads directly (it is
thread-safe): parsing a resource checks its JSON Schemas, about a millisecond
each, and a re-list of thousands of tools must not stall the event loop that
serves requests.
"""

from link.registry.kubernetes.api import KubernetesConfigError, build_api_client
from link.registry.kubernetes.source import KubernetesSource
from link.registry.kubernetes.status import desired_status, toolset_status_patch

__all__ = ["KubernetesConfigError", "KubernetesSource", "build_api_client", "desired_status",
           "toolset_status_patch"]
