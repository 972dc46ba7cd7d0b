"""The HTTP API of exports, beside its handler (``app.py``), imported as a top-level package.

Lambda, the local stack and the unit tests put the handler's directory on ``sys.path``:

- :mod:`.routes`: the routes, each calling one library object;
- :mod:`.dispatch`: how a request reaches its route, as Powertools' resolver would route it
  (without importing Powertools' event handler, which costs a cold start);
- :mod:`.checks`: how the routes read a request, in plain Python (no pydantic at a cold start);
- :mod:`.bodies`: the answers' JSON bodies, in plain Python;
- :mod:`.body`: how a request's body is read as JSON (never a 500, whatever its bytes);
- :mod:`.errors`: how errors become 404, 409, 422, 503 and 500 answers;
- :mod:`.models`: the request and response bodies as pydantic models (the description's schemas);
- :mod:`.described`: the routes as the OpenAPI description states them, validated with pydantic
  by Powertools' resolver: it answers the requests :mod:`.checks` do not vouch for, and those
  :mod:`.dispatch` does not know;
- :mod:`.openapi`: the OpenAPI description of the routes.
"""
