"""The local JSON-RPC 2.0 API on a Unix socket; daemon.py hands it a Services object."""

from edged.api import codes
from edged.api.server import ApiServer, ApiServerError
from edged.api.services import Services, ShuttingDownError

__all__ = ["ApiServer", "ApiServerError", "Services", "ShuttingDownError", "codes"]
