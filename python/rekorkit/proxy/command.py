"""``rekorkit proxy UPSTREAM --cache DIR --key VKEY``: a verifying tile proxy.

Serves the upstream's ``/checkpoint`` and ``/tile/...`` paths from a
:class:`~rekorkit.tilecache.FileSystemTileCache`, verifying everything up to
a signed, consistent checkpoint before it is served or cached, and keeps
serving what it verified while the upstream is down. Prints
``listening on http://HOST:PORT`` once bound; SIGTERM stops it after the
sync batch in hand.
"""

from __future__ import annotations

import argparse
import os
import sys

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``proxy`` arguments."""
    parser.add_argument("upstream", help="the upstream log's tile prefix (serves /checkpoint)")
    parser.add_argument("--cache", required=True, metavar="DIR", help="tile cache directory")
    parser.add_argument(
        "--key", required=True, metavar="VKEY|PEM|trusted_root.json", help="the log's key"
    )
    parser.add_argument("--origin", default=None, help="expected checkpoint origin")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (0 picks a free one)")
    parser.add_argument(
        "--sync",
        choices=("edge", "mirror", "off"),
        default="edge",
        help="background job: prefetch the right edge, mirror the whole log, or none",
    )
    parser.add_argument(
        "--interval", type=float, default=10.0, metavar="S", help="seconds between sync passes"
    )
    parser.add_argument(
        "--max-cache-bytes",
        type=int,
        default=None,
        metavar="N",
        help="bound on the cache size (least recently used tiles are evicted)",
    )
    parser.add_argument(
        "--memory-bytes",
        type=int,
        default=64 << 20,
        metavar="N",
        help="verified tiles kept in memory (default 64 MiB)",
    )
    parser.add_argument(
        "--checkpoint-ttl",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds before a request makes the proxy ask the upstream for a newer checkpoint",
    )
    parser.add_argument(
        "--mirror-key",
        default=None,
        metavar="FILE",
        help="also be a c2sp.org/tlog-mirror mirror of the log, cosigning with this signer key "
        "(PRIVATE+KEY+...); its copy lives in DIR/tlog-mirror",
    )
    parser.add_argument("--no-fsync", action="store_true", help="skip fsync (throwaway caches)")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level")


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; 0 on a clean stop, 2 on a usage error."""
    from rekorkit.audit.command import resolve_verifier
    from rekorkit.proxy.app import create_app
    from rekorkit.proxy.service import ProxyService
    from rekorkit.proxy.sync import SyncJob
    from rekorkit.server.command import bind_socket, serve_asgi
    from rekorkit.server.service import ServerOptions
    from rekorkit.tilecache import FileSystemTileCache

    try:
        verifier = resolve_verifier(args.key, args.upstream, "v2", args.origin)
        cache = FileSystemTileCache(
            args.cache, max_bytes=args.max_cache_bytes, fsync=not args.no_fsync
        )
    except (ValueError, OSError) as exc:
        print(f"rekorkit proxy: usage error: {exc}", file=sys.stderr)
        return 2
    service = ProxyService(
        args.upstream,
        cache,
        verifier,
        origin=args.origin,
        checkpoint_ttl=args.checkpoint_ttl,
        memory_bytes=args.memory_bytes,
    )
    job = None if args.sync == "off" else SyncJob(service, mode=args.sync, interval=args.interval)
    mirror_app, mirror_cache = None, None
    if args.mirror_key is not None:
        from rekorkit.errors import MalformedError, VerificationError
        from rekorkit.proxy.mirror_app import create_mirror_app
        from rekorkit.proxy.tlogmirror import TlogMirror, parse_cosigner_key

        try:
            with open(args.mirror_key, encoding="utf-8") as f:
                signer = parse_cosigner_key(f.read())
            mirror_cache = FileSystemTileCache(
                os.path.join(args.cache, "tlog-mirror"), fsync=not args.no_fsync
            )
            mirror = TlogMirror(mirror_cache, verifier, signer, origin=args.origin)
        except (MalformedError, VerificationError, OSError) as exc:
            print(f"rekorkit proxy: --mirror-key: {exc}", file=sys.stderr)
            cache.close()
            if mirror_cache is not None:
                mirror_cache.close()
            return 2
        mirror_app = create_mirror_app(mirror)
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(f"rekorkit proxy: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        cache.close()
        if mirror_cache is not None:
            mirror_cache.close()
        return 2
    host = f"[{args.host}]" if ":" in args.host else args.host
    banner = [
        f"upstream: {args.upstream}",
        f"cache: {args.cache}",
        f"listening on http://{host}:{sock.getsockname()[1]}",
    ]
    # The log server's request deadline and connection bound (ServerOptions'
    # defaults); the lifespan lets the sync batch in hand finish on SIGTERM.
    try:
        serve_asgi(
            create_app(service, job=job, mirror=mirror_app),
            sock,
            banner,
            options=ServerOptions(),
            log_level=args.log_level,
        )
    finally:
        cache.close()
        if mirror_cache is not None:
            mirror_cache.close()
    return 0
