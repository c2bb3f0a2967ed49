"""Access control of the real app (``python app.py``) over HTTP, with accounts on.

One app for the module, with a model that cannot load (nothing here needs one): an admin
(``boss``) and two annotators (``ann1``, ``ann2``) made with ``rrm-ui users add``; a data set
whose items *and stored model output* (reasoning, answers) carry XSS payloads; Judge-tab items of
``ann1`` and ``ann2``, ``ann2``'s label on one with a unique note; and a paused job owned by ``ann2``.

- Every route Gradio registers (listed from Gradio's own app object, built in-process) and every
  event of this app (read from ``/config`` as the admin) refuses a request without a login, except
  the few left open on purpose (``OPEN``), which are checked to leak nothing.
- Through the API, ``ann1`` cannot see or control ``ann2``'s jobs, Judge-tab labels or exported
  labels; the admin can. The Explorer shows every label to every logged-in user, as documented.
- A made-up cookie gets nothing; another user's Gradio session hash is refused, so ``ann1`` can
  neither read ``ann2``'s ``gr.State`` nor label through it.
- In Chromium, the payloads in stored model output stay inert in the Annotate tab, the Explorer's
  item view and the Judge tab's history.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from rrm_ui.domain import (
    Choice,
    HumanLabel,
    Item,
    ItemResult,
    JobStatus,
    Judgment,
    PairOutcome,
    Status,
    Verdict,
)
from rrm_ui.services.annotation import item_ref
from rrm_ui.services.datasets import import_file
from rrm_ui.storage import Repository, make_engine, upgrade
from tests.conftest import ROOT
from tests.test_e2e_browser import (
    XSS,
    App,
    browser,  # noqa: F401 - the module-scoped Chromium fixture
    shot,
)

pytestmark = pytest.mark.slow

USERS = {"boss": True, "ann1": False, "ann2": False}  # name -> admin
PAYLOADS = [*XSS, "<img src=x onerror=alert(1)>", '"><iframe src="javascript:alert(1)"></iframe>',
            "<details open ontoggle=window.__xss=1>", "</think><script>alert(1)</script>"]  # fmt: skip
N_ITEMS = 8
SEARCH_WORD = "quokkaxss"  # in every stored reasoning trace
NO_RUN = "(none: collect preferences without a model verdict)"  # rrm_ui.ui.tabs.annotate.NO_RUN

# Routes answered without a login, and why (each is checked to leak nothing below):
OPEN = {
    "/": "the login page (Gradio's, with the endpoint list it embeds taken out by LoginGate)",
    "/login": "POST the user name and password",
    "/login/": "the same",
    "/logout": "drops the login cookie and redirects to the login page",
    "/assets/{path:path}": "Gradio's compiled front end (JS, CSS), the same for every Gradio app",
    "/static/{path:path}": "Gradio's fonts and scripts, the same for every Gradio app",
    "/theme.css": "the default theme's CSS, which the login page uses",
    "/gradio_api/theme.css": "the same",
    "/favicon.ico": "Gradio's icon",
    "/robots.txt": "a constant",
    "/gradio_api/startup-events": "launch() itself calls it without a cookie; answers true or false",
}


def password(name: str) -> str:
    return f"pw-{name}-secret"


@dataclass
class World:
    app: App
    job_id: int  # ann2's paused job
    judge_note: str  # ann2's note on their Judge-tab item
    judge_query: str  # ann2's Judge-tab query
    label_note: str = field(default_factory=lambda: f"ann2-annotate-note-{uuid.uuid4().hex[:10]}")


def _judgment(k: int, a: int, b: int) -> Judgment:
    verdict = Verdict.A if a == 0 else Verdict.B  # response 1 wins in both orders
    return Judgment(a=a, b=b, sample=0, verdict=verdict, status=Status.OK, lenient_verdict=verdict,
                    reasoning=f"{SEARCH_WORD} {PAYLOADS[(k + a) % len(PAYLOADS)]} **thinking** "
                              f"{PAYLOADS[(k + 3) % len(PAYLOADS)]}",
                    answer=f"{PAYLOADS[(k + b + 1) % len(PAYLOADS)]}\n\\boxed{{Assistant {1 if a == 0 else 2}}}",
                    prompt_tokens=10, completion_tokens=20, reasoning_tokens=15, ttft_s=0.1, latency_s=1.0,
                    finish_reason="stop", seed=0)  # fmt: skip


def _result(ext_id: str, k: int) -> ItemResult:
    js = tuple(_judgment(k, a, b) for a, b in ((0, 1), (1, 0)))
    pair = PairOutcome(i=0, j=1, winner=0, votes={0: 2, 1: 0}, invalid_votes=0, position_consistent=True,
                       samples_spent=2, adaptive_reason=None, judgments=js)  # fmt: skip
    return ItemResult(id=ext_id, strategy="pair", winner=0, ranking=(0, 1), pairs=(pair,), template="rrm",
                      template_version="1", model="known", backend="test")  # fmt: skip


def build_world(tmp: Path) -> tuple[int, str, str]:
    """The database before the app starts: returns (ann2's job id, ann2's Judge-tab note and query)."""
    engine = make_engine(f"sqlite:///{tmp / 'app.db'}")
    upgrade(engine)
    repo = Repository(engine)
    rows = [{"id": f"q{i}", "query": f"Question {i}? {PAYLOADS[i % len(PAYLOADS)]}",
             "response_a": f"A{i} {PAYLOADS[(i + 1) % len(PAYLOADS)]}",
             "response_b": f"B{i} {PAYLOADS[(i + 2) % len(PAYLOADS)]}"} for i in range(N_ITEMS)]  # fmt: skip
    path = tmp / "audit.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = import_file(repo, path, name="audit")
    settings = {"backend": "test", "model": "known", "template": "rrm", "template_version": "1",
                "strategy": "pair", "sampling": {}, "compute": {}}  # fmt: skip
    job_run, _ = repo.get_or_create_run(ds.id, "ann2-job-run", **settings)
    job = repo.create_job(job_run.id, owner="ann2", items_total=N_ITEMS, bracket_seed=0, status=JobStatus.PAUSED)
    run, _ = repo.get_or_create_run(ds.id, "stored-run", **settings)  # the latest run: the Annotate tab's default
    for k, it in enumerate(repo.items(ds.id)):
        repo.save_result(run.id, it.db_id, _result(it.item.id, k))
    # Judge-tab items as LiveJudgment stores them (services.live), each with its author's label
    note = f"ann2-judge-note-{uuid.uuid4().hex[:10]} {PAYLOADS[0]}"
    query = f"ann2-private-question-{uuid.uuid4().hex[:10]} {PAYLOADS[1]}"
    for name, q, n in (("ann1", "ann1's own question", "ann1's note"), ("ann2", query, note)):
        ds_id, item_id = repo.add_item("judge-tab", Item(f"live-{name}", q, ("first", "second")), meta={"by": name})
        live_run, _ = repo.get_or_create_run(ds_id, "live-run", **settings)
        repo.save_result(live_run.id, item_id, _result(f"live-{name}", 1))
        repo.add_label(HumanLabel(annotator=name, item_db_id=item_id, choice=Choice.B, run_id=live_run.id, note=n))
    return job.id, note, query


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("access")
    job_id, note, query = build_world(tmp)
    db = f"sqlite:///{tmp / 'app.db'}"
    for name, admin in USERS.items():  # one at a time: SQLite, and the first one creates the accounts table
        command = [sys.executable, "-m", "rrm_ui", "users", "add", name, "--password-stdin", "--db", db]
        proc = subprocess.run(command + (["--admin"] if admin else []), input=password(name) + "\n", cwd=ROOT,
                              capture_output=True, text=True)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    app = App(tmp, "--model", str(tmp / "no-such-model"), "--backend", "transformers")
    app.wait("serving on")
    yield World(app, job_id, note, query)
    app.stop()


# --- a client of Gradio's HTTP protocol, as the browser speaks it -----------------------------------


class Api:
    """One browser tab's worth of HTTP: a login cookie (or none) and a Gradio session hash."""

    def __init__(self, url: str, user: str | None = None) -> None:
        self.http = httpx.Client(base_url=url, timeout=30, follow_redirects=False)
        self.session_hash = secrets.token_hex(6)
        self.user = user
        self._config: dict[str, Any] | None = None
        if user is not None:
            r = self.http.post("/login", data={"username": user, "password": password(user)})
            assert r.status_code == 200, r.text

    def close(self) -> None:
        self.http.close()

    def prime(self) -> Api:
        """What the page does on load: fill this session's data set menus (Gradio refuses a menu value
        that is not among the session's choices)."""
        for menu in ("ann-dataset", "batch-dataset"):
            self.call(self.dep(output=menu, trigger="load"))
        return self

    @property
    def config(self) -> dict[str, Any]:
        if self._config is None:
            r = self.http.get("/config")
            assert r.status_code == 200, r.text
            self._config = r.json()
        return self._config

    def dep(self, *, api_name: str | None = None, target: str | None = None, output: str | None = None,
            trigger: str | None = None) -> dict[str, Any]:  # fmt: skip
        """The app's event by api name, or by the elem_id of its trigger or of one of its outputs."""
        elems = {c["id"]: c.get("props", {}).get("elem_id") for c in self.config["components"]}
        for d in self.config["dependencies"]:
            targets = [(elems.get(t[0]), t[1]) for t in d["targets"]]
            if api_name is not None and d.get("api_name") != api_name:
                continue
            if target is not None and not any(e == target and (trigger is None or t == trigger) for e, t in targets):
                continue
            if output is not None and output not in [elems.get(o) for o in d["outputs"]]:
                continue
            if trigger is not None and target is None and not any(t == trigger for _e, t in targets):
                continue
            return d
        raise AssertionError(f"no event with api_name={api_name} target={target} output={output} trigger={trigger}")

    def inputs(self, dep: dict[str, Any], values: list[Any]) -> list[Any]:
        """The event's input list: state inputs as None (the server holds them), the rest in order."""
        types = {c["id"]: c["type"] for c in self.config["components"]}
        given = iter(values)
        return [None if types[i] == "state" else next(given) for i in dep["inputs"]]

    def join(self, dep: dict[str, Any], data: list[Any], *, session_hash: str | None = None,
             event_data: Any = None) -> httpx.Response:  # fmt: skip
        body = {"data": data, "fn_index": dep["id"], "trigger_id": None, "event_data": event_data,
                "session_hash": session_hash or self.session_hash}  # fmt: skip
        path = "/gradio_api/queue/join" if dep["queue"] else "/gradio_api/run/predict"
        return self.http.post(path, json=body)

    def call(self, dep: dict[str, Any], values: list[Any] | None = None, *, event_data: Any = None) -> list[Any]:
        """Run an event of this tab's session to its end; its output values."""
        r = self.join(dep, self.inputs(dep, values or []), event_data=event_data)
        assert r.status_code == 200, r.text
        if not dep["queue"]:
            return r.json()["data"]
        event_id = r.json()["event_id"]
        params = {"session_hash": self.session_hash}
        with self.http.stream("GET", "/gradio_api/queue/data", params=params) as stream:
            assert stream.status_code == 200
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") == event_id and msg.get("msg") == "process_completed":
                    assert msg["success"], msg
                    return msg["output"]["data"]
        raise AssertionError(f"event {event_id} never completed")


def text_of(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def table_rows(value: Any) -> list[list[Any]]:
    """The rows of a gr.Dataframe output (a plain value or an update)."""
    value = value.get("value", value) if isinstance(value, dict) else value
    return value["data"] if isinstance(value, dict) else []


@pytest.fixture
def api(world: World) -> Iterator[Any]:
    clients: list[Api] = []

    def make(user: str | None = None) -> Api:
        clients.append(Api(world.app.url, user))
        return clients[-1]

    yield make
    for c in clients:
        c.close()


# --- 1. every route needs a login -------------------------------------------------------------------


def gradio_routes() -> list[tuple[str, str]]:
    """(method, path template) of every HTTP route this Gradio version registers, from its own app object."""
    import gradio as gr
    from gradio.routes import App as GradioApp
    from starlette.routing import Mount, Route, WebSocketRoute

    with gr.Blocks() as demo:
        gr.Textbox()
    demo.auth = lambda _user, _password: False
    app = GradioApp.create_app(demo)
    out = []
    for r in app.routes:
        assert not isinstance(r, WebSocketRoute | Mount), f"unexpected route kind {r!r}: check it by hand"
        assert isinstance(r, Route)
        out += [(m, r.path) for m in sorted(r.methods or ())]
    return out


def concrete(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "x1"), path)


SECRETS_ON_OPEN_ROUTES = ("named_endpoints", "annotate_", "batch_", "explore_fn", "audit", "judge-tab", "ann2",
                          "boss", "stored-run", SEARCH_WORD, "Question 1")  # fmt: skip


def test_every_route_and_every_event_needs_a_login(world: World, api) -> None:  # noqa: ANN001
    admin = api("boss").prime()
    admin.call(admin.dep(target="ann-next"), ["audit", NO_RUN, "Unlabelled items", "", False])  # a live session
    # a file the app serves: an export, fetched with the admin's cookie first to show the URL is real
    export = admin.call(admin.dep(target="batch-export"), ["audit", None, "csv", False, "model"])
    served = f"/gradio_api/file={export[0]['path']}"
    assert admin.http.get(served).status_code == 200
    assert admin.http.get(f"/gradio_api/file={world.app.db}").status_code == 403  # not the database, even so
    events = [d for d in admin.config["dependencies"] if d.get("api_name")]
    info = admin.http.get("/gradio_api/info")
    assert info.status_code == 200
    named = set(info.json()["named_endpoints"])
    assert {f"/{d['api_name']}" for d in events} >= named, "an endpoint in /info that /config does not list"

    anon = api()
    values = {"path_or_url": export[0]["path"], "path": "index.html", "session_hash": admin.session_hash,
              "event_id": "x1", "url_path": "https://example.com/"}  # fmt: skip
    requests = []  # (method, path template, concrete path)
    for method, template in gradio_routes():
        if "{api_name}" in template:
            requests += [(method, template, concrete(template, {**values, "api_name": d["api_name"]})) for d in events]
        else:
            requests.append((method, template, concrete(template, values)))
    requests += [("GET", "file", served), ("GET", "file", f"/gradio_api/file={world.app.db}")]
    checked, opened = 0, []
    body = {"data": [], "fn_index": 0, "session_hash": admin.session_hash, "event_data": None}
    for method, template, path in requests:
        r = anon.http.request(method, path, json=body if method == "POST" else None)
        if template in OPEN:
            opened.append((method, path, r))
            continue
        checked += 1
        assert r.status_code in (401, 403), f"{method} {path} answered {r.status_code} without a login: {r.text[:300]}"
        assert method == "HEAD" or r.json() == {"detail": "Not authenticated"}, r.text
    for d in admin.config["dependencies"]:  # every event through the queue, by number, in the admin's session
        r = anon.join(d, [None] * len(d["inputs"]), session_hash=admin.session_hash)
        assert r.status_code == 401, f"event {d.get('api_name')} ran without a login: {r.text[:300]}"
        checked += 1
    assert checked > 500, checked
    print(f"{checked} requests without a login refused; {len(opened)} to the open routes")

    # the open ones leak nothing: no endpoint list, no data set, user or item
    assert {t for _m, t, _p in requests if t in OPEN} == set(OPEN), "an allowed route that Gradio no longer has"
    for method, path, r in opened:
        assert r.status_code < 500, (method, path, r.status_code)
        text = r.text if r.headers.get("content-type", "").startswith(("text/", "application/json")) else ""
        leaked = [s for s in SECRETS_ON_OPEN_ROUTES if s in text]
        assert not leaked, f"{method} {path} without a login shows {leaked}"
    page = anon.http.get("/")
    assert page.status_code == 200 and '"auth_required":true' in page.text
    assert "window.gradio_api_info = null;" in page.text
    assert anon.http.get("/logout").status_code in (302, 307)
    assert anon.http.post("/login", data={"username": "boss", "password": "wrong-password"}).status_code == 400

    # logging out ends the login: the old cookie gets nothing
    cookies = dict(admin.http.cookies)
    assert admin.http.get("/logout").status_code in (302, 307)
    stale = Api(world.app.url)
    stale.http.cookies.update(cookies)
    assert stale.http.get("/config").status_code == 401
    stale.close()


# --- 2. an annotator cannot read or change another's labels or jobs ---------------------------------


def test_an_annotator_sees_and_controls_only_their_own_jobs_and_labels(world: World, api) -> None:  # noqa: ANN001
    app = world.app
    ann2 = api("ann2").prime()
    form = ["audit", NO_RUN, "Unlabelled items", "", False]
    ann2.call(ann2.dep(target="ann-next"), form)
    for _ in range(2):
        ann2.call(ann2.dep(api_name="annotate_choose_A"), [world.label_note])
    assert app.query("select a.name, l.note from labels l join annotators a on a.id = l.annotator_id "
                     f"where l.note = '{world.label_note}'") == [("ann2", world.label_note)] * 2  # fmt: skip

    ann1, boss = api("ann1").prime(), api("boss").prime()
    for who in (ann1, boss):
        assert who.call(who.dep(target="ann-next"), form)  # each has a session with an item of their own

    # Judge tab, "Your recent judgments": ann1 sees their own item only; the admin sees ann2's too
    history = ann1.call(ann1.dep(output="judge-history", trigger="load"))
    assert "ann1's own question" in text_of(history)
    assert world.judge_note.split()[0] not in text_of(history) and world.judge_query.split()[0] not in text_of(history)
    everyone = boss.call(boss.dep(output="judge-history", trigger="load"))
    assert world.judge_note.split()[0] in text_of(everyone) and world.judge_query.split()[0] in text_of(everyone)

    # Batch tab: ann2's job is not in ann1's table; the admin's lists it
    (mine, _progress) = ann1.call(ann1.dep(output="batch-jobs", trigger="tick"))
    assert world.job_id not in [row[0] for row in table_rows(mine)] and "ann2" not in text_of(mine)
    assert world.job_id in [row[0] for row in table_rows(boss.call(boss.dep(output="batch-jobs", trigger="tick"))[0])]

    # ... and ann1 cannot pause, resume or cancel it: a refusal, the job unchanged in the database
    before = app.query(f"select status, message, updated_at from jobs where id = {world.job_id}")
    assert before[0][0] == "paused"
    for action in ("pause", "resume", "cancel"):
        (said,) = ann1.call(ann1.dep(target=f"batch-{action}"), [world.job_id])
        assert f"Cannot {action} job {world.job_id}" in said, said
    assert app.query(f"select status, message, updated_at from jobs where id = {world.job_id}") == before
    # the admin may: their cancel goes through
    (said,) = boss.call(boss.dep(target="batch-cancel"), [world.job_id])
    assert app.query(f"select status from jobs where id = {world.job_id}") == [("cancelled",)], said

    # Batch tab exports: ann1's export holds only ann1's labels; the admin's holds ann2's
    for who, sees in ((ann1, False), (boss, True)):
        out = who.call(who.dep(target="batch-export"), ["audit", "stored-run", "csv", False, "model"])
        dump = who.http.get(f"/gradio_api/file={out[0]['path']}")
        assert dump.status_code == 200 and SEARCH_WORD in dump.text
        assert ("ann2=A" in dump.text) == sees, (who.user, dump.text[:500])

    # Explorer: documented (docs/app.md, docs/dashboards.md) to show every label, with its note, to every
    # logged-in user; this pins that policy so a change to it is a deliberate one
    item_id = app.query(f"select item_id from labels where note = '{world.label_note}' order by id limit 1")[0][0]
    name, ext = app.query(f"select d.name, i.ext_id from items i join datasets d on d.id = i.dataset_id "
                          f"where i.id = {item_id}")[0]  # fmt: skip
    ref = item_ref(name, ext)  # a row's first column: the item as every tab names it
    opened = ann1.call(ann1.dep(target="exp-table", trigger="select"), event_data={"row_value": [ref],
                       "index": [0, 0], "value": ref})  # fmt: skip
    assert world.label_note in text_of(opened) and "ann2" in text_of(opened)


def test_only_reviewers_and_admins_adjudicate_over_http(world: World, api) -> None:  # noqa: ANN001
    """The Review tab's events (docs/review.md): an annotator's queue, adjudication and settings requests
    are refused with a message and store nothing; the admin's go through."""
    app = world.app
    ann1, boss = api("ann1"), api("boss")
    item_id = app.query("select i.id from items i join datasets d on d.id = i.dataset_id "
                        "where d.name = 'audit' order by i.id limit 1")[0][0]  # fmt: skip
    for who in (ann1, boss):  # the tab shown: its data set menu filled for this session
        who.call(who.dep(target="tab-review", trigger="select"), [None])

    def refused(who: Api, api_name: str, values: list[Any]) -> str:
        dep = who.dep(api_name=api_name)
        r = who.join(dep, who.inputs(dep, values))
        assert r.status_code == 200, r.text
        with who.http.stream("GET", "/gradio_api/queue/data", params={"session_hash": who.session_hash}) as stream:
            for line in stream.iter_lines():
                msg = json.loads(line[5:]) if line.startswith("data:") else {}
                if msg.get("event_id") == r.json()["event_id"] and msg.get("msg") == "process_completed":
                    assert not msg["success"], msg
                    return text_of(msg)
        raise AssertionError("never completed")

    key = f"{item_id}:0:1"
    assert "only reviewers and admins" in refused(ann1, "review_queue", ["audit", "stored-run", ["humans"], False])
    assert "only reviewers and admins" in refused(ann1, "review_decide", ["audit", "stored-run", key, "A is better",
                                                                          "mine"])  # fmt: skip
    assert "only admins" in refused(ann1, "review_settings", ["audit", "# mine", "off"])
    assert app.query("select count(*) from adjudications") == [(0,)]
    assert app.query("select count(*) from guidelines") == [(0,)]
    message, _table, _pair, _view = boss.call(boss.dep(api_name="review_queue"), ["audit", "stored-run", ["humans"],
                                                                                 False])  # fmt: skip
    assert "0 pairs" in text_of(message)
    boss.call(boss.dep(api_name="review_decide"), ["audit", "stored-run", key, "B is better", "admin's call"])
    assert app.query("select a.name, j.choice, j.reason from adjudications j join annotators a on "
                     "a.id = j.reviewer_id") == [("boss", "B", "admin's call")]  # fmt: skip


# --- 3. session forging -------------------------------------------------------------------------------


def test_a_made_up_cookie_or_another_users_session_hash_gets_nothing(world: World, api) -> None:  # noqa: ANN001
    app = world.app
    ann2, ann1 = api("ann2").prime(), api("ann1").prime()
    shown = ann2.call(ann2.dep(target="ann-next"), ["audit", NO_RUN, "Unlabelled items", "", False])
    served = re.search(r"Item audit / (q\d+)", text_of(shown))  # the item as every tab names it
    assert served, text_of(shown)[:300]  # ann2's gr.State now holds the item served to ann2
    labels = app.query("select count(*) from labels")[0][0]

    # ann1 sending ann2's session hash: refused before any handler (or gr.State) is reached
    choose = ann1.dep(api_name="annotate_choose_A")
    r = ann1.join(choose, ann1.inputs(choose, ["forged by ann1"]), session_hash=ann2.session_hash)
    assert r.status_code == 403, r.text
    assert ann1.http.get("/gradio_api/queue/data", params={"session_hash": ann2.session_hash}).status_code == 403
    with ann1.http.stream("GET", f"/gradio_api/heartbeat/{ann2.session_hash}") as beat:
        assert beat.status_code == 403
    datasets = ann1.dep(output="ann-dataset", trigger="load")
    assert ann1.join(datasets, [], session_hash=ann2.session_hash).status_code == 403
    assert app.query("select count(*) from labels")[0][0] == labels

    # a made-up login cookie, under the real cookie's name: nothing
    name = next(k for k in ann1.http.cookies if k.startswith("access-token-unsecure-"))
    forged = Api(app.url)
    forged.http.cookies.set(name, secrets.token_urlsafe(16))
    forged.http.cookies.set(name.replace("-unsecure", ""), secrets.token_urlsafe(16))
    assert forged.http.get("/config").status_code == 401
    assert forged.http.get("/gradio_api/info").status_code == 401
    assert forged.join(choose, [None, "forged"], session_hash=ann2.session_hash).status_code == 401
    forged.close()

    # ann2's session is intact: their choice is stored as theirs, on the item they were served
    ann2.call(choose, ["ann2 after the forgery attempts"])
    rows = app.query("select a.name, l.note, i.ext_id from labels l join annotators a on a.id = l.annotator_id "
                     f"join items i on i.id = l.item_id order by l.id limit -1 offset {labels}")  # fmt: skip
    assert rows == [("ann2", "ann2 after the forgery attempts", served.group(1))]


# --- 4. XSS in stored model output stays inert in the browser ---------------------------------------


def test_xss_payloads_in_stored_model_output_stay_inert(browser, world: World) -> None:  # noqa: ANN001, F811
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.goto(world.app.url)
    pg.wait_for_selector("input[type=password]", timeout=60_000)
    pg.locator("input").first.fill("boss")
    pg.fill("input[type=password]", password("boss"))
    pg.keyboard.press("Enter")
    pg.wait_for_selector("#whoami:has-text('Logged in as')", timeout=60_000)
    dangerous = "[onerror], [onload], [ontoggle], script:not([src]):not([type]), iframe, a[href^='javascript:']"

    def inert(where: str) -> None:
        pg.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
        pg.wait_for_timeout(300)  # time for an onerror / ontoggle to fire, were one there
        assert pg.evaluate("window.__xss") is None, where
        assert dialogs == [], (where, dialogs)
        in_tabs = f"Array.from(document.querySelector('#tabs').querySelectorAll({dangerous!r}))"  # all tab content
        found = pg.evaluate(in_tabs + ".map(e => e.outerHTML.slice(0, 120))")
        assert found == [], (where, found)

    # Annotate: the stored run (the latest of "audit") is audited, its reasoning shown beside the pair
    pg.get_by_role("tab", name="Annotate").click()
    pg.click("#ann-next")
    pg.wait_for_selector("#ann-model .rrm-stream", timeout=30_000)
    model = pg.locator("#ann-model").inner_text()
    assert SEARCH_WORD in model and "onerror" in model, model[:500]  # shown as text
    inert("annotate")
    shot(pg, "access-xss-annotate")

    # Explorer: a row of the stored run opens with every trace and label
    pg.get_by_role("tab", name="Explorer").click()
    pg.fill("#exp-search input, #exp-search textarea", SEARCH_WORD)
    pg.click("#exp-go")
    pg.wait_for_selector("#exp-summary:has-text('rows match')", timeout=30_000)
    pg.locator("#exp-table [data-testid='cell-0-1']").click()
    pg.wait_for_selector("#exp-runs .rrm-run", timeout=30_000)
    inert("explorer")
    traces = pg.locator("#exp-runs").inner_text()
    assert SEARCH_WORD in traces and "onerror" in traces, traces[:500]
    shot(pg, "access-xss-explorer")

    # Judge tab history: the admin sees ann2's item and note, payloads in both
    pg.get_by_role("tab", name="Judge").click()
    pg.get_by_text("Your recent judgments").click()
    pg.wait_for_function("n => (document.querySelector('#judge-history')?.innerText || '').includes(n)",
                         arg=world.judge_note.split()[0], timeout=30_000)  # fmt: skip
    inert("judge history")
    shot(pg, "access-xss-judge-history")
    context.close()
