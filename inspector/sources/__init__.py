"""Frame sources: Basler cameras (pypylon), scanner hot folders, video streams.

Every source yields ``Frame`` objects; the daemon neither knows nor cares which kind it has.
"""

from inspector.sources.base import Frame, Source, SourceError, new_cell_id

__all__ = ["Frame", "Source", "SourceError", "new_cell_id"]
