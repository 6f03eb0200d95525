"""An OpenAI-compatible HTTP server over any engine: `stylealign serve MODEL`.

Serves a local student or oracle to tools that speak the OpenAI API, and
lets the `openai` engine be tested for real. Chat completions work with any
engine (continuation as in vLLM: `continue_final_message`); the completions
endpoint needs an engine with a raw-prompt path (`HFEngine`), and returns
prompt log-probs with `echo` + `logprobs` + `max_tokens: 0`, as vLLM does.

Model calls run in a worker thread, one at a time. Requests that arrive
while the model is busy are merged into the next batch (same kind and
sampling parameters), so concurrent clients get batched generation; the hf
engine seeds every sample from its own request, so merging never changes
results.

Exposed to others, it stays bounded: `ServerLimits` caps `n`, the prompts of
one request and its completions in all (prompts × n), `max_tokens`, the body
size (413) and the prompt's tokens; malformed requests get 400 naming the
field; a request whose client disconnects is dropped (queued) or stopped
(running: the engine is called one batch at a time, and no further batch
starts once every client of the call left; the hf engine also stops the batch
in flight); `stream: true` is refused with 400; an API key (`--api-key-env`)
is required with `Authorization: Bearer`, and a non-loopback address is
refused without one unless `--insecure` is given. Every error, unknown paths
and server faults included, comes in OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}`, which clients parse.

The modules, one idea each: `protocol` (the OpenAI request and response schemas, the error shape),
`limits` (`ServerLimits` and its checks), `guard` (API key, body size, who needs a key), `batching`
(the request batcher and client disconnects), `app` (`create_app`, one function per route) and
`launch` (`serve`, `BackgroundServer`).
"""

from stylealign.server.app import create_app
from stylealign.server.guard import is_loopback, serve_key
from stylealign.server.launch import BackgroundServer, build_engine, serve
from stylealign.server.limits import ServerLimits

__all__ = ["BackgroundServer", "ServerLimits", "build_engine", "create_app", "is_loopback", "serve", "serve_key"]
