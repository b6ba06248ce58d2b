"""`gis batch`: a whole catalogue of `gis shift` runs, on one machine or a Ray cluster,
resumable (docs/BATCH.md).

* ``gis.batch.manifest``: the tasks (a CSV/JSONL manifest, or one per catalogue item);
* ``gis.batch.segments``: named customer segments;
* ``gis.batch.runner``: running them (in process, a local process pool, or Ray) into an
  output folder, atomically per task;
* ``gis.batch.summary``: summary.csv and index.html.
"""

from .manifest import BatchTask, read_manifest, tasks_for_items
from .runner import ModelSpec, TaskWorker, execute

__all__ = ["BatchTask", "ModelSpec", "TaskWorker", "execute", "read_manifest",
           "tasks_for_items"]
