"""The HTTP API: Kuma's resource paths and error shape over the registry store.

The application (app) is built from routers by resource (probes, meshes, dataplanes,
apply, zones, resources kept whole at their collection paths, prometheus_sd) behind one
gate (access); requests are read (reading), answers rendered (rendering), errors
answered in Kuma's shape (errors), writes committed and reported (writes), and the
OpenAPI document completed (openapi).
"""
