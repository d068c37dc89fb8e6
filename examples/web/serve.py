"""Serve the drawing demo on 127.0.0.1, with /model.onnx mapped to artifacts/model.onnx.

    python examples/web/serve.py [--port 8000] [--model artifacts/model.onnx]

Needs `npm ci --ignore-scripts` in examples/web first (onnxruntime-web's wasm files are served from
its node_modules, so the page loads nothing from the internet). --port 0 picks a free port; the
first line printed is the page's URL either way.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = HERE.parent.parent / "artifacts" / "model.onnx"
ORT_DIST = HERE / "node_modules" / "onnxruntime-web" / "dist"


class Handler(SimpleHTTPRequestHandler):
    # Browsers refuse to import a module or stream-compile wasm served with the wrong type, and
    # the mimetypes table of an older Python or a bare container may lack these.
    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
    }

    def __init__(self, *args, model: Path, quiet: bool, **kwargs):
        self.model = model
        self.quiet = quiet
        super().__init__(*args, directory=str(HERE), **kwargs)

    def translate_path(self, path: str) -> str:
        if path.split("?", 1)[0].split("#", 1)[0] == "/model.onnx":
            return str(self.model)
        return super().translate_path(path)

    def end_headers(self) -> None:
        # A rebuilt model or edited page must show up on reload, not from the browser's cache.
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="ONNX model to serve")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)

    if not args.model.is_file():
        print(f"serve.py: model not found: {args.model}", file=sys.stderr)
        return 1
    if not ORT_DIST.is_dir():
        print(
            f"serve.py: {ORT_DIST} is missing: run `npm ci --ignore-scripts` in {HERE}",
            file=sys.stderr,
        )
        return 1

    handler = functools.partial(Handler, model=args.model.resolve(), quiet=args.quiet)
    try:
        server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    except OSError as e:
        print(f"serve.py: cannot listen on 127.0.0.1:{args.port}: {e.strerror}", file=sys.stderr)
        return 1
    with server:
        print(f"http://127.0.0.1:{server.server_address[1]}/", flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the way to stop it
            server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
