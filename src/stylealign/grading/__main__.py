"""`python -m stylealign.grading --worker`: the worker loop `pool` starts (kept out of the package import)."""

import sys

from stylealign.grading.pool import serve_worker

if sys.argv[1:2] == ["--worker"]:
    serve_worker()
