"""The HTTP server under the app: a bounded front door, graceful drain, worker processes.

Kept apart from the app so that importing the config (which reads the front door's
defaults from `frontdoor`) never imports uvicorn.
"""
