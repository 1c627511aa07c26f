"""Talking to the running daemon over its socket, with errors a technician can act on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from edged.api import codes
from edged.client import ApiClient, ApiError
from edged.ctl.errors import EXIT_CANNOT, EXIT_PROBLEM, JOIN_EDGED, CtlError, NoPermissionError

# Errors after which the command cannot do its job at all (exit 2), not a finding (exit 1).
_CANNOT = frozenset({codes.DEVICE_NOT_CONFIGURED, codes.SHUTTING_DOWN})


@contextlib.asynccontextmanager
async def connect(path: str) -> AsyncIterator[ApiClient]:
    """An open API client; CtlError (exit 2) saying why the daemon cannot be reached."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            client = await stack.enter_async_context(ApiClient(path))
        except FileNotFoundError:
            raise CtlError(
                f"no daemon socket at {path}: is edged running? (systemctl status edged)"
            ) from None
        except PermissionError:
            raise NoPermissionError(f"no permission to use {path}: {JOIN_EDGED}") from None
        except ConnectionRefusedError:
            raise CtlError(
                f"nothing listens on {path}: edged is not running (systemctl status edged)"
            ) from None
        except OSError as exc:
            raise CtlError(f"cannot talk to edged at {path}: {exc}") from None
        yield client


async def call(client: ApiClient, method: str, params: dict[str, Any] | None = None) -> Any:
    """One request; an API error becomes CtlError (exit 2 if it cannot be done, else 1)."""
    try:
        return await client.call(method, params)
    except ApiError as exc:
        status = EXIT_CANNOT if exc.code in _CANNOT else EXIT_PROBLEM
        raise CtlError(f"{method}: {exc}", status) from None
    except ConnectionError:
        raise CtlError(f"{method}: edged closed the connection (restarting?)") from None
    except TimeoutError:
        raise CtlError(f"{method}: edged did not answer in time") from None


async def _once(path: str, method: str, params: dict[str, Any] | None) -> Any:
    async with connect(path) as client:
        return await call(client, method, params)


def request(path: str, method: str, params: dict[str, Any] | None = None) -> Any:
    """One request on a connection of its own, for commands that need nothing else."""
    return asyncio.run(_once(path, method, params))
