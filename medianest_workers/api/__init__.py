"""The HTTP enqueue API (FastAPI): thin on purpose: validate, enqueue, report.

`app.create_app()` builds it; `jobs` and `schedules` hold the routes, `health` /healthz and
/metrics, `auth` the API-key check, `errors` the one error shape, `middleware` correlation ids
and the body limit, `schemas` the request and response bodies.
"""
