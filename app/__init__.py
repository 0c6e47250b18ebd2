"""The AAM REST service (FastAPI) and what both deployables share."""
