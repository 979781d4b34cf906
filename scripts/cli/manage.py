"""``mmsctl register | scale | describe | list | unregister | health``: the management API."""
import json

from .. import loading, server, supervisor
from ..errors import ManagementError, MmsctlError, UsageError
from ..management import ManagementClient, default_management_url
from .common import command, print_json


def _client(args):
    return ManagementClient(args.management_url)


def cmd_register(args):
    client = _client(args)
    if args.name:  # a model of that name, perhaps still being registered: say which, send nothing
        try:
            described = client.describe(args.name, what="register %s" % args.name)
        except MmsctlError as err:
            if getattr(err, "status", None) != 404:
                raise
        else:
            status = loading.load_status(client, args.name, described=described)
            raise UsageError("register %s: a model of that name is already registered at %s%s: unregister it "
                             "first, or choose another --name" % (
                                 args.name, client.base_url,
                                 " and still loading (%d of %d workers have loaded it)" % (
                                     status["loadedWorkers"], status["workerCount"])
                                 if status["allWorkersLoaded"] is False else ""))
    body = client.register(args.url, name=args.name, batch_size=args.batch_size,
                           max_batch_delay=args.max_batch_delay, workers=args.workers,
                           response_timeout=args.response_timeout, allow=args.allow_url or ())
    print(body.get("status", json.dumps(body)))


def cmd_scale(args):
    client = _client(args)
    what = "scale model %s" % args.name
    before = loading.wait_until_loaded(client, args.name, args.timeout, what)
    if before is None:  # not registered: MMS says so
        before = client.describe(args.name, what=what)
    try:
        status, body = client.scale(args.name, args.min_worker, args.max_worker, synchronous=not args.no_wait,
                                    timeout=args.timeout)
    except ManagementError as err:
        if err.status is None or err.status < 500:  # refused before anything changed, or no answer
            raise
        # MMS keeps the new worker count and retries the failed workers forever: go back
        client.scale(args.name, before["minWorkers"], before["maxWorkers"], synchronous=True, timeout=args.timeout)
        raise ManagementError("%s; the model keeps its previous %d worker%s" % (
            err, before["minWorkers"], "" if before["minWorkers"] == 1 else "s"), status=err.status) from err
    if status == 210:  # MMS's READY counts a worker still retrying its load, so no count is given
        print("scale model %s: %s answered 210 (partial success): fewer than %d workers have loaded the model; "
              "the reason is in the server's logs/mms_log.log" % (args.name, client.base_url, args.min_worker))
        return 3
    print(body.get("status", json.dumps(body)))
    return 0


def _server_settings(args, client):
    """{model: settings} from the state of the `mmsctl serve` behind this management URL, if it is ours."""
    try:
        state = server.ServerState.load(args.state_dir)
    except (MmsctlError, OSError, TypeError, ValueError):
        return {}
    return state.settings if state.management_url.rstrip("/") == client.base_url else {}


def _with_status(client, described, settings):
    """MMS's description of a model plus mmsctl's: workers that really loaded it, settings served with."""
    described = dict(described)
    described.update(loading.load_status(client, described["modelName"], described=described))
    own = settings.get(described["modelName"], {})
    for key, value in (("responseTimeoutSeconds", own.get("response_timeout_s")), ("threads", own.get("threads")),
                       ("enginePreference", own.get("engine")), ("archive", own.get("archive"))):
        if value is not None:
            described[key] = value
    return described


def cmd_describe(args):
    client = _client(args)
    print_json(_with_status(client, client.describe(args.name), _server_settings(args, client)))


def cmd_list(args):
    client = _client(args)
    settings = _server_settings(args, client)
    listed = []
    for model in client.list(limit=args.limit):
        described = _with_status(client, client.describe(model["modelName"]), settings)
        listed.append({key: described[key] for key in (
            "modelName", "modelUrl", "batchSize", "maxBatchDelay", "minWorkers", "maxWorkers", "workerCount",
            "loadedWorkers", "allWorkersLoaded", "responseTimeoutSeconds", "threads", "enginePreference")
            if key in described})
    print_json(listed)


def cmd_unregister(args):
    client = _client(args)
    status = loading.load_status(client, args.name, described=client.describe(args.name, what="unregister model %s"
                                                                               % args.name))
    if loading.dead_message("", args.name, status):  # nothing is loading: unregister it now
        client.unregister(args.name)
        print("unregistered model %s, which had no live worker process (its workers had died)" % args.name)
        return 0
    if not args.force:
        loading.wait_until_loaded(client, args.name, args.timeout, "unregister model %s" % args.name,
                                  hint="; or pass --force to unregister it while it loads")
    print(client.unregister(args.name).get("status", "unregistered"))


def _given_up(args, client):
    """{model: why} the supervisor of the `mmsctl serve` behind this management URL gave up healing."""
    try:
        state = server.ServerState.load(args.state_dir)
    except (MmsctlError, OSError, TypeError, ValueError):
        return {}
    if state.management_url.rstrip("/") != client.base_url:
        return {}
    return supervisor.read_record(state.state_dir)["gave_up"]


def cmd_health(args):
    client = _client(args)
    lost = {name: why for name, why in _given_up(args, client).items() if not args.names or name in args.names}
    if lost:
        raise ManagementError("health: %s" % "; ".join(
            "model %s: the supervisor of `mmsctl serve` gave up healing it: %s" % item for item in sorted(lost.items())))
    counts = client.health(args.names)
    for name, count in counts.items():
        print("%s: %s live worker%s loaded" % (name, "?" if count is None else count, "" if count == 1 else "s"))


def _state_option(parser):
    parser.add_argument("--state-dir", default=server.default_state_dir(),
                        help="state folder of the `mmsctl serve` behind the URL, for the settings it served "
                             "with (default %(default)s)")


def add_commands(sub):

    def parser(name, help_text, example):
        p = command(sub, name, help_text, example)
        p.add_argument("--management-url", default=default_management_url(),
                       help="management API (default %(default)s, or $MMSCTL_MANAGEMENT_URL)")
        return p

    reg = parser("register", "register an archive from the model store (or an allowed URL)",
                 "mmsctl register efficientnet-lite0.mar --workers 1")
    reg.add_argument("url", help="archive file name in the model store, or a URL allowed by --allow-url")
    reg.add_argument("--name", help="model name (default: the archive's)")
    reg.add_argument("--batch-size", type=int, help="server-side batch size")
    reg.add_argument("--max-batch-delay", type=int, help="ms to wait to fill a batch")
    reg.add_argument("--workers", type=int, help="initial workers")
    reg.add_argument("--response-timeout", type=int, help="seconds a worker may take per request")
    reg.add_argument("--allow-url", action="append", metavar="PREFIX",
                     help="allow remote archives whose URL starts with PREFIX (repeatable)")
    reg.set_defaults(func=cmd_register)

    scale = parser("scale", "set a model's workers; waits until they have loaded it (exit 3: HTTP 210, partial)",
                   "mmsctl scale efficientnet-lite0 --min-worker 1")
    scale.add_argument("name")
    scale.add_argument("--min-worker", type=int, required=True)
    scale.add_argument("--max-worker", type=int)
    scale.add_argument("--no-wait", action="store_true", help="return at once (synchronous=false)")
    scale.add_argument("--timeout", type=float, default=300.0,
                       help="seconds to wait for a registration in progress, then for the workers (default 300)")
    scale.set_defaults(func=cmd_scale)

    desc = parser("describe", "show a model's settings, workers, and how many have really loaded it",
                  "mmsctl describe efficientnet-lite0")
    desc.add_argument("name")
    _state_option(desc)
    desc.set_defaults(func=cmd_describe)

    lst = parser("list", "list registered models with their settings and loaded workers (all pages)", "mmsctl list")
    lst.add_argument("--limit", type=int, default=100, help="models per page asked of MMS (default 100)")
    _state_option(lst)
    lst.set_defaults(func=cmd_list)

    unreg = parser("unregister", "unregister a model (after a registration in progress has finished)",
                   "mmsctl unregister efficientnet-lite0")
    unreg.add_argument("name")
    unreg.add_argument("--timeout", type=float, default=300.0,
                       help="seconds to wait for a registration in progress (default 300)")
    unreg.add_argument("--force", action="store_true",
                       help="do not wait: unregister a model whose workers are still loading it or keep failing to")
    unreg.set_defaults(func=cmd_unregister)

    health = parser("health", "exit 0 only if each model has a live worker process that has loaded it (the "
                    "exporter's /readyz rule; unlike /ping and MMS's READY)", "mmsctl health efficientnet-lite0")
    health.add_argument("names", nargs="*", metavar="NAME", help="models to check (default: all registered)")
    _state_option(health)
    health.set_defaults(func=cmd_health)
