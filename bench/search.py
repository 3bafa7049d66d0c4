"""Search and add benchmark (`make bench`): loads a dataset into its own embedded PostgreSQL, then
measures database-only search, recall@k, REST search end to end, embedding time and add
throughput, and writes the results into docs/benchmarks.md.

    .venv/bin/python bench/search.py                        # 200 × 500 + one 20k user (+ 20 × 20)
    .venv/bin/python bench/search.py --filler-rows 879600   # padded to 1,000,000 rows
    .venv/bin/python bench/search.py --users 20 --large-user-rows 2000 --queries 30   # quick check

A loaded dataset is kept in bench/.data/ and reused when its parameters match; --fresh rebuilds.
Not a test: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import asyncpg  # noqa: E402
import httpx  # noqa: E402

from app.db import migrate  # noqa: E402
from app.db.bootstrap import AUDITOR_ROLE, OWNER_ROLE, RUNTIME_ROLE, bootstrap  # noqa: E402
from app.db.embedded import SUPERUSER, EmbeddedPostgres  # noqa: E402
from app.db.session import create_engine, session_factory  # noqa: E402
from app.db.vectors import register_vector_codec  # noqa: E402
from app.embeddings import create_embedder  # noqa: E402
from app.settings import Settings, load_settings  # noqa: E402
from bench import dataset, measure, report, text  # noqa: E402
from bench.server import Server, start_server, stop_server  # noqa: E402

DATA = ROOT / "bench" / ".data"
# Loading and index builds want memory; the measurements themselves run with these settings too.
PG_SETTINGS = {
    "shared_buffers": "2GB",
    "maintenance_work_mem": "4GB",
    "max_parallel_maintenance_workers": "1",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "wal_level": "minimal",  # COPY into a table truncated in the same transaction skips the WAL
    "max_wal_senders": "0",
}


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = dataset.Spec()
    p.add_argument("--users", type=int, default=d.users, help="regular users (default %(default)s)")
    p.add_argument("--per-user", type=int, default=d.per_user, help="memories per regular user (%(default)s)")
    p.add_argument("--large-user-rows", type=int, default=d.large_user_rows, help="the large user (%(default)s)")
    p.add_argument("--tiny-users", type=int, default=d.tiny_users, help="tiny users (%(default)s)")
    p.add_argument("--tiny-rows", type=int, default=d.tiny_rows, help="memories per tiny user (%(default)s)")
    p.add_argument(
        "--filler-rows", type=int, default=0, help="extra rows in users of --per-user rows each, to pad the table"
    )
    p.add_argument("--base-sentences", type=int, default=d.base_sentences, help="really embedded sentences")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--queries", type=int, default=200, help="queries per size class and measurement")
    p.add_argument("--sample-users", type=int, default=20, help="measured users per size class")
    p.add_argument("-k", type=int, default=10, help="results per search (recall@k)")
    p.add_argument("--block", type=int, default=5, help="queries per embed → database → REST cycle")
    p.add_argument(
        "--sweep-queries",
        type=int,
        default=50,
        help=f"for users with at least {SWEEP_MIN_ROWS} memories, queries per alternative setting tried (0 = none)",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="MINUTES",
        help="first wait up to this long for the machine to be mostly idle (shared machines)",
    )
    p.add_argument("--adds", type=int, default=500, help="memories added per add-throughput measurement")
    p.add_argument("--add-clients", type=int, default=4, help="concurrent REST clients adding")
    p.add_argument("--fresh", action="store_true", help="new cluster, reload everything")
    p.add_argument("--skip-rest", action="store_true", help="database measurements only")
    p.add_argument("--keep-running", action="store_true", help="leave the bench PostgreSQL running")
    p.add_argument("--label", help="section title in docs/benchmarks.md (default from the dataset size)")
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    p.add_argument("--render", type=Path, metavar="RESULTS_JSON", help="only re-render a saved run's section")
    return p.parse_args(argv)


def wait_quiet(minutes: float, below_pct: float = 25) -> None:
    deadline = time.monotonic() + minutes * 60
    while True:
        busy = measure.busy_now()
        if busy < below_pct or time.monotonic() > deadline:
            log(f"machine {busy:.0f} % busy; starting")
            return
        log(f"machine {busy:.0f} % busy; waiting for it to quieten")


# --- orchestration --------------------------------------------------------------------------------
def size_classes(spec: dataset.Spec, sample: int) -> list[measure.SizeClass]:
    by_class: dict[str, list[tuple[str, int]]] = {}
    for email, rows, name in spec.owners():
        by_class.setdefault(name, []).append((email, rows))
    classes = []
    for name in ("tiny", "regular", "large"):
        users = by_class.get(name, [])
        if users:
            step = max(1, len(users) // sample)
            classes.append(measure.SizeClass(name, users[::step][:sample]))
    return classes


async def prepare_database(args: argparse.Namespace, pg: EmbeddedPostgres, spec: dataset.Spec, embedder: Any) -> dict:
    urls = await bootstrap(pg)
    context = migrate.MigrationContext(RUNTIME_ROLE, AUDITOR_ROLE, embedder.dimensions, embedder.model)
    await migrate.upgrade(urls.admin, context)
    admin = {"host": str(pg.run_dir), "user": OWNER_ROLE, "database": "engram"}
    conn = await asyncpg.connect(**admin)
    try:
        stored = await dataset.stored_spec(conn)
        await dataset.remove_add_users(conn)
        await dataset.restore_indexes(conn, log)
    finally:
        await conn.close()
    if stored and not args.fresh and {k: stored.get(k) for k in spec.as_dict()} == spec.as_dict():
        log(f"reusing the loaded dataset ({stored['rows']:,} rows, loaded {stored['loaded_at']})")
        return {"reused": True, **stored}
    log(f"loading {spec.total_rows:,} memories for {len(spec.owners()):,} users")
    pool = await dataset.base_pool(spec, embedder, DATA, log)
    started = time.perf_counter()
    load = await dataset.load(admin, spec, pool, log)
    load["total_s"] = time.perf_counter() - started
    return {"reused": False, **spec.as_dict(), "rows": load["rows"], "load": load}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    spec = dataset.Spec(
        users=args.users,
        per_user=args.per_user,
        large_user_rows=args.large_user_rows,
        tiny_users=args.tiny_users,
        tiny_rows=args.tiny_rows,
        filler_rows=args.filler_rows,
        base_sentences=args.base_sentences,
        seed=args.seed,
    )
    results: dict[str, Any] = {"command": report.command_line(), "started": datetime.now(UTC).isoformat()}
    results["load_before"] = os.getloadavg()
    if args.fresh and (DATA / "pg").exists():
        EmbeddedPostgres(DATA / "pg").stop()
        shutil.rmtree(DATA / "pg")
    pg = EmbeddedPostgres(DATA / "pg", settings=PG_SETTINGS)
    DATA.mkdir(parents=True, exist_ok=True)
    pg.start()
    # The same ENGRAM_* settings as the server gets (environment only, no .env); the cache is off
    # so every embed_query in this process runs the model.
    settings = load_settings(dotenv=DATA / "no-such.env").replace(embedding_cache_size=0)
    embedder = create_embedder(settings)
    await embedder.start()
    server: Server | None = None
    engine = None
    try:
        results["dataset"] = await prepare_database(args, pg, spec, embedder)
        results["machine"] = await report.machine(pg, report.host())
        results["app_settings"] = {
            "search_exact_max_rows": settings.search_exact_max_rows,
            "hnsw_ef_search": settings.hnsw_ef_search,
            "commit": report.git_commit(),
        }
        await dataset.prewarm({"host": str(pg.run_dir), "user": SUPERUSER, "database": "engram"}, log)
        urls = await bootstrap(pg)
        engine = create_engine(urls.runtime, pool_size=2, max_overflow=2)
        sessions = session_factory(engine)
        capture = measure.StatementCapture(engine)
        k = args.k

        classes = size_classes(spec, args.sample_users)
        rng = random.Random(args.seed + 1)
        n = args.queries
        texts = text.queries(n * 2 * len(classes) + 20 * len(classes), rng)
        for index, cls in enumerate(classes):
            chunk = texts[index * 2 * n : (index + 1) * 2 * n]
            cls.texts, cls.hybrid_texts = chunk[:n], chunk[n:]
        warm_texts = texts[2 * n * len(classes) :]

        tokens: dict[str, str] = {}
        client: httpx.AsyncClient | None = None
        if not args.skip_rest:
            tokens = {email: await measure.make_token(sessions, email) for cls in classes for email, _ in cls.users}
            add_token = await measure.make_token(sessions, f"{dataset.ADD_USER_PREFIX}rest@{dataset.DOMAIN}")
            log("starting engram serve")
            started = time.perf_counter()
            server = start_server(urls.runtime, DATA)
            results["server_start_s"] = time.perf_counter() - started
            client = httpx.AsyncClient(base_url=server.url, timeout=60)
        raw = await asyncpg.connect(
            host=str(pg.run_dir),
            user=RUNTIME_ROLE,
            database="engram",
            server_settings={"application_name": "engram-bench", "plan_cache_mode": "force_custom_plan"},
        )
        await register_vector_codec(raw)
        bench = Bench(settings, embedder, sessions, capture, raw, client, tokens, k, args.block, args.sweep_queries)
        try:
            results["classes"] = {}
            for cls in classes:
                results["classes"][cls.name] = await measure_class(bench, cls, warm_texts[:20])
                warm_texts = warm_texts[20:]
            if client is not None:
                log(f"add throughput: {args.adds} REST adds with {args.add_clients} clients")
                adds = text.memory_sentences(args.adds * 2, random.Random(args.seed + 2))
                cpu = measure.CpuSampler()
                results["add_rest"] = {
                    **await measure.rest_adds(client, add_token, adds[: args.adds], args.add_clients),
                    **cpu.read(),
                }
                await client.aclose()
                assert server is not None
                stop_server(server)
                server = None
                log(
                    f"add throughput: {args.adds} service adds, "
                    f"embed_documents batches of {settings.embedding_batch_size}"
                )
                cpu = measure.CpuSampler()
                results["add_service"] = {
                    **await measure.service_adds(
                        sessions,
                        settings,
                        embedder,
                        f"{dataset.ADD_USER_PREFIX}service@{dataset.DOMAIN}",
                        adds[args.adds :],
                        settings.embedding_batch_size,
                    ),
                    **cpu.read(),
                }
        finally:
            await raw.close()
            if client is not None and not client.is_closed:
                await client.aclose()
        results["load_after"] = os.getloadavg()
        results["finished"] = datetime.now(UTC).isoformat()
        admin = await asyncpg.connect(host=str(pg.run_dir), user=OWNER_ROLE, database="engram")
        try:
            await dataset.remove_add_users(admin)
        finally:
            await admin.close()
        return results
    finally:
        if server is not None:
            stop_server(server)
        if engine is not None:
            await engine.dispose()
        await embedder.aclose()
        if not args.keep_running:
            pg.stop()


@dataclass
class Bench:
    settings: Settings
    embedder: Any
    sessions: Any
    capture: measure.StatementCapture
    raw: asyncpg.Connection
    client: httpx.AsyncClient | None
    tokens: dict[str, str]
    k: int
    block: int
    sweep_queries: int


# Alternatives tried for the large user whichever route it takes: (label, route, hnsw.ef_search,
# rows fetched). pgvector caps hnsw.ef_search at 1000.
SWEEP = [
    ("HNSW route, ef_search 400", "hnsw", 400, None),
    ("HNSW route, ef_search 1000", "hnsw", 1000, None),
    ("HNSW route, ef_search 1000, LIMIT 40, keep the nearest 10", "hnsw", 1000, 40),
    ("HNSW route, ef_search 1000, LIMIT 100, keep the nearest 10", "hnsw", 1000, 100),
    ("exact route", "exact", 1000, None),
]
SWEEP_MIN_ROWS = 5000


async def sweep(b: Bench, cls: measure.SizeClass, corpora: dict[str, Any]) -> list[dict[str, Any]]:
    """The same queries through either route and other settings, to show what recall each would
    buy and at what price (the route is forced through ENGRAM_SEARCH_EXACT_MAX_ROWS)."""
    part = cls.part(0, b.sweep_queries)
    out: list[dict[str, Any]] = []
    # the class may have been measured on the other route: bring the HNSW pages in first, untimed
    await measure.db_search(b.sessions, b.settings.replace(search_exact_max_rows=0), part, b.k)
    for label, route, ef_search, fetch in SWEEP:
        settings = b.settings.replace(hnsw_ef_search=ef_search, search_exact_max_rows=10**9 if route == "exact" else 0)
        try:
            times, found = await measure.db_search(b.sessions, settings, part, b.k, fetch)
        except Exception as exc:  # a variant the database refuses must not cost the whole run
            log(f"  {label}: failed: {exc}")
            continue
        out.append({"variant": label, **measure.summary(times), **measure.recall(part, found, corpora, b.k)})
        log(f"  {label}: p50 {out[-1]['p50']:.1f} ms, recall {out[-1]['recall']:.4f}")
    return out


async def measure_class(b: Bench, cls: measure.SizeClass, warm_texts: list[str]) -> dict[str, Any]:
    """All search measurements of one size class, in blocks of `b.block` queries that cycle
    through embedding, database and REST, so each sees the same conditions on a shared machine."""
    route = "exact" if cls.users[0][1] <= b.settings.search_exact_max_rows else "hnsw"
    log(f"{cls.name}: {len(cls.users)} users of {cls.users[0][1]:,} memories, {route} route")
    warm = cls.part(0, 0)
    warm.texts = warm_texts
    warm.vectors, _ = await measure.embed_queries(b.embedder, warm_texts)
    await measure.db_search(b.sessions, b.settings, warm, b.k)
    if b.client is not None:
        await measure.rest_search(b.client, b.tokens, warm, warm_texts, "semantic", b.k)
    acc: dict[str, list[float]] = {}
    found: list[list[Any]] = []
    rest_counts: dict[str, list[int]] = {}
    phases: dict[str, dict[str, list[float]]] = {"rest_semantic": {}, "rest_semantic_cached": {}}
    cpu = measure.CpuSampler()
    for start in range(0, len(cls.texts), b.block):
        part = cls.part(start, start + b.block)
        part.vectors, t1 = await measure.embed_queries(b.embedder, part.texts)
        part.hybrid_vectors, t2 = await measure.embed_queries(b.embedder, part.hybrid_texts)
        cls.vectors += part.vectors
        cls.hybrid_vectors += part.hybrid_vectors
        acc.setdefault("embed", []).extend(t1 + t2)
        # app path and raw asyncpg run the same queries; alternate which goes first (warmer pages)
        raw_first = (start // b.block) % 2 == 1
        if raw_first:
            acc.setdefault("db_raw", []).extend(
                await measure.db_raw(b.raw, b.sessions, b.capture, b.settings, part, b.k)
            )
        times, ids = await measure.db_search(b.sessions, b.settings, part, b.k)
        acc.setdefault("db", []).extend(times)
        found += ids
        if not raw_first:
            acc.setdefault("db_raw", []).extend(
                await measure.db_raw(b.raw, b.sessions, b.capture, b.settings, part, b.k)
            )
        acc.setdefault("db_hybrid", []).extend(await measure.db_hybrid(b.sessions, b.settings, part, b.k))
        acc.setdefault("db_empty", []).extend(await measure.db_empty(b.sessions, b.settings, part))
        if b.client is not None:
            for key, texts_, mode in (
                ("rest_semantic", part.texts, "semantic"),
                ("rest_hybrid", part.hybrid_texts, "hybrid"),
                ("rest_semantic_cached", part.texts, "semantic"),  # the same texts again: cache hits
            ):
                times, errors, short = await measure.rest_search(
                    b.client, b.tokens, part, texts_, mode, b.k, phases.get(key)
                )
                acc.setdefault(key, []).extend(times)
                counts = rest_counts.setdefault(key, [0, 0])
                counts[0] += errors
                counts[1] += short
    entry: dict[str, Any] = {
        "users": len(cls.users),
        "rows_per_user": cls.users[0][1],
        "route": route,
        **cpu.read(),
        **{key: measure.summary(values) for key, values in acc.items()},
    }
    for key, (errors, short) in rest_counts.items():
        entry[key] |= {"errors": errors, "short": short}
    if b.client is not None:
        entry["server_phases"] = {
            key: {name: measure.summary(values) for name, values in by_name.items()} for key, by_name in phases.items()
        }
    corpora = {email: await measure.user_vectors(b.sessions, email) for email, _ in cls.users}
    entry["recall"] = measure.recall(cls, found, corpora, b.k)
    if cls.users[0][1] >= SWEEP_MIN_ROWS and b.sweep_queries:
        entry["sweep"] = await sweep(b, cls, corpora)
    entry["explain"] = await measure.explain_sample(
        b.sessions, b.capture, b.settings, cls, b.k, min(20, len(cls.texts))
    )
    log(
        f"  db p50 {entry['db']['p50']:.2f} ms (raw {entry['db_raw']['p50']:.2f}, server "
        f"{entry['explain']['execution']['p50']:.2f}), recall {entry['recall']['recall']:.4f}, "
        f"short {entry['recall']['short']}"
        + (f", REST semantic p50 {entry['rest_semantic']['p50']:.1f} ms" if "rest_semantic" in entry else "")
    )
    return entry


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render:  # rewrite a section from a saved run, measuring nothing
        saved = json.loads(args.render.read_text())
        report.write(args.output, saved, args.label)
        return 0
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    started = time.perf_counter()
    results = asyncio.run(run(args))
    results["wall_s"] = time.perf_counter() - started
    report.save_json(results, DATA)
    report.write(args.output, results, args.label)
    log(f"done in {results['wall_s']:.0f} s; results in {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
