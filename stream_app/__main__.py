"""``python -m stream_app``: run the worker."""

from stream_app.worker import main

main()
