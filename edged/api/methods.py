"""The local API's methods: parameter checks, calls into Services, errors mapped to codes."""

from __future__ import annotations

from typing import Any

import msgspec
import structlog

from edged.api import codes
from edged.api.device_methods import DEVICE_METHODS
from edged.api.jsonrpc import (
    DuplicateKey,
    Notification,
    Params,
    Request,
    RequestId,
    error_response,
    result_response,
)
from edged.api.methods_base import Method, RpcError, Session, id_param, invalid_params
from edged.api.refdata_methods import REFDATA_METHODS
from edged.api.services import Services, ShuttingDownError
from edged.carddata import redact
from edged.errors import (
    DeviceNotConfiguredError,
    DeviceNotReadyError,
    JournalError,
    JournalFullError,
    NotSupportedError,
    PaymentBusyError,
    PaymentConflictError,
    PaymentNotFoundError,
    Problem,
    SaleConflictError,
    SaleNotFoundError,
    ValidationError,
)
from edged.events import EVENT_TYPES
from edged.operations import NeedsStoreError

log = structlog.get_logger(__name__)


async def _status(services: Services, session: Session, params: dict[str, Any]) -> Any:
    return services.status()


async def _sale_commit(services: Services, session: Session, params: dict[str, Any]) -> Any:
    return await services.commit_sale(params["sale"])


async def _sale_get(services: Services, session: Session, params: dict[str, Any]) -> Any:
    sale_id = id_param(params, "id", "sale id")
    found = await services.get_sale(sale_id)
    if found is None:
        raise RpcError(
            codes.SALE_NOT_FOUND, f"sale not found: no sale with id {sale_id!r}", {"id": sale_id}
        )
    return found


async def _sync_now(services: Services, session: Session, params: dict[str, Any]) -> Any:
    return await services.sync_now()


async def _operation_check(services: Services, session: Session, params: dict[str, Any]) -> Any:
    return services.check_operation(params["kind"])


async def _subscribe(services: Services, session: Session, params: dict[str, Any]) -> Any:
    events = params["events"]
    known = ", ".join(sorted(EVENT_TYPES))
    if not isinstance(events, list):
        raise invalid_params(
            [Problem("events", f"must be an array of event types ({known}); [] unsubscribes")]
        )
    problems = []
    for i, name in enumerate(events):
        if not isinstance(name, str):
            problems.append(Problem(f"events[{i}]", f"must be a string, one of: {known}"))
        elif name not in EVENT_TYPES:
            problems.append(
                Problem(f"events[{i}]", f"unknown event type {name[:40]!r}; known: {known}")
            )
    if problems:
        raise invalid_params(problems)
    types = frozenset(events)
    session.subscribe(types)
    return {"events": sorted(types)}


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("status", (), frozenset(), _status),
        Method("sale.commit", ("sale",), frozenset({"sale"}), _sale_commit),
        Method("sale.get", ("id",), frozenset({"id"}), _sale_get),
        Method("sync.now", (), frozenset(), _sync_now),
        Method("operation.check", ("kind",), frozenset({"kind"}), _operation_check),
        Method("subscribe", ("events",), frozenset({"events"}), _subscribe),
        *DEVICE_METHODS,
        *REFDATA_METHODS,
    )
}


def bind_params(method: Method, params: Params) -> dict[str, Any]:
    """Map by-name or by-position params onto the method's names; -32602 on any mismatch."""
    names = method.params
    if isinstance(params, DuplicateKey):
        raise invalid_params([Problem(params.path, params.problem())])
    if params is None:
        bound: dict[str, Any] = {}
    elif isinstance(params, list):
        if len(params) > len(names):
            takes = ", ".join(names) if names else "none"
            raise invalid_params(
                [
                    Problem(
                        "params",
                        f"{method.name} takes {len(names)} parameter(s) ({takes}), "
                        f"got {len(params)}",
                    )
                ]
            )
        bound = dict(zip(names, params, strict=False))
    else:
        bound = params
    problems = [
        Problem(
            key[:60], f"is not a parameter of {method.name}; it takes: {', '.join(names) or 'none'}"
        )
        for key in bound
        if key not in names
    ]
    problems += [
        Problem(name, "is required")
        for name in names
        if name in method.required and name not in bound
    ]
    if problems:
        raise invalid_params(problems)
    return bound


class Dispatcher:
    """Run one request against Services and encode its response; never raises Exception."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def dispatch(self, message: Request | Notification, session: Session) -> bytes | None:
        """Return the encoded response, or None for a notification."""
        req_id: RequestId = message.id if isinstance(message, Request) else None
        try:
            result = await self._call(message, session)
            if isinstance(message, Notification):
                return None
            try:
                return result_response(req_id, result)
            except (TypeError, msgspec.EncodeError) as exc:
                raise RuntimeError(f"{message.method} returned a result JSON cannot carry") from exc
        except RpcError as exc:
            return self._error(message, session, exc.code, exc.message, exc.data)
        except Exception as exc:
            code, text, data = self._map(message, session, exc)
            return self._error(message, session, code, text, data)

    async def _call(self, message: Request | Notification, session: Session) -> Any:
        method = METHODS.get(message.method)
        if method is None:
            raise RpcError(
                codes.METHOD_NOT_FOUND,
                f"method not found: {message.method[:60]!r}; methods: {', '.join(sorted(METHODS))}",
            )
        params = bind_params(method, message.params)
        return await method.handler(self.services, session, params)

    def _error(
        self, message: Request | Notification, session: Session, code: int, text: str, data: Any
    ) -> bytes | None:
        if code in (codes.INVALID_PARAMS, codes.METHOD_NOT_FOUND):
            paths = (
                [redact(e["path"]) for e in data["errors"]]
                if code == codes.INVALID_PARAMS
                else None
            )
            # paths, not problems: a problem text may quote what the client sent; the method
            # and the paths (parameter names) are the client's too, hence redacted
            log.info(
                "api_request_rejected",
                peer=session.peer,
                method=redact(message.method[:60]),
                code=code,
                paths=paths,
            )
        if isinstance(message, Notification):
            return None
        return error_response(message.id, code, text, data)

    def _map(
        self, message: Request | Notification, session: Session, exc: Exception
    ) -> tuple[int, str, Any]:
        """Translate a service exception into (code, message, data)."""
        if isinstance(exc, ValidationError):
            problems = exc.problems or [Problem("params", str(exc) or "invalid")]
            err = invalid_params(problems)
            return err.code, err.message, err.data
        if isinstance(exc, SaleConflictError):
            return (
                codes.SALE_CONFLICT,
                f"sale id conflict: {exc}",
                {"id": exc.sale_id, "seq": exc.seq},
            )
        if isinstance(exc, JournalFullError):
            log.error("api_journal_full", peer=session.peer, method=message.method, error=str(exc))
            return codes.JOURNAL_FULL, f"journal full: {exc}", None
        if isinstance(exc, JournalError):
            log.error("api_journal_error", peer=session.peer, method=message.method, error=str(exc))
            return codes.JOURNAL_ERROR, f"journal error: {exc}", None
        if isinstance(exc, NeedsStoreError):
            return codes.NEEDS_STORE, str(exc), {"kinds": exc.kinds, "link": exc.link}
        if mapped := _map_device_error(exc):
            return mapped
        if isinstance(exc, ShuttingDownError):
            return (
                codes.SHUTTING_DOWN,
                f"shutting down: {str(exc) or 'the daemon is stopping'}",
                None,
            )
        log.exception("api_handler_failed", peer=session.peer, method=message.method)
        return (
            codes.INTERNAL_ERROR,
            f"internal error in {message.method}; the daemon logged the details",
            {"error": type(exc).__name__},
        )


def _map_device_error(exc: Exception) -> tuple[int, str, Any] | None:
    if isinstance(exc, DeviceNotConfiguredError):
        return codes.DEVICE_NOT_CONFIGURED, str(exc), {"device": exc.device}
    if isinstance(exc, DeviceNotReadyError):
        data = {"device": exc.device, "state": exc.state, "detail": exc.detail}
        return codes.DEVICE_NOT_READY, str(exc), data
    if isinstance(exc, PaymentBusyError):
        return codes.PAYMENT_BUSY, str(exc), {"id": exc.busy_id}
    if isinstance(exc, PaymentConflictError):
        return codes.PAYMENT_CONFLICT, str(exc), {"id": exc.payment_id}
    if isinstance(exc, PaymentNotFoundError):
        return codes.PAYMENT_NOT_FOUND, str(exc), {"id": exc.payment_id}
    if isinstance(exc, SaleNotFoundError):
        return codes.SALE_NOT_FOUND, f"sale not found: {exc}", {"id": exc.sale_id}
    if isinstance(exc, NotSupportedError):
        return codes.NOT_SUPPORTED, str(exc), None
    return None
