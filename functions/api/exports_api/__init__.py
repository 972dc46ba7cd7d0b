"""The HTTP API of exports, beside its handler (``app.py``), imported as a top-level package.

Lambda, the local stack and the unit tests put the handler's directory on ``sys.path``:

- :mod:`.models`: the request and response bodies (the OpenAPI description's schemas);
- :mod:`.routes`: the Powertools ``Router`` with the routes, each calling one library object;
- :mod:`.body`: how a request's body is read as JSON (never a 500, whatever its bytes);
- :mod:`.errors`: how errors become 422, 503 and 500 answers;
- :mod:`.openapi`: the OpenAPI description of the routes.
"""
