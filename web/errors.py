"""Errors as their callers can read them: JSON under `/api/`, the error page elsewhere.

A script calling the API must never get an HTML page: a 404 for an unknown route, a 405, a body
too large, or a bug (500, logged with a reference the caller can quote) all answer JSON.
"""

from __future__ import annotations

import secrets
from typing import Any

from flask import Flask, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _http_error(error: HTTPException) -> Any:
    if not _wants_json():
        return error
    message = error.description or error.name
    return jsonify({"error": message}), error.code or 500


def _server_error(error: Exception) -> Any:
    if isinstance(error, HTTPException):
        return _http_error(error)
    reference = secrets.token_hex(6)
    current_app.logger.exception("Unhandled error %s on %s %s", reference, request.method, request.path,
                                 exc_info=error)
    message = (f"The server failed on this request (reference {reference}); it was logged. "
               f"Try again, and quote the reference if it keeps failing.")
    if _wants_json():
        return jsonify({"error": message, "reference": reference}), 500
    return render_template("error.html", title="Something went wrong", message=message), 500


def install(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _server_error)
