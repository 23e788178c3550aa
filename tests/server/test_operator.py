"""An operator's day, through the admin API: why would this be refused, who changed that target,
what is registered (filtered, in order), and a registry exported and imported back."""

from __future__ import annotations

import httpx
import pytest

from bench.serverproc import ADMIN_KEY
from guard_server.auth import fingerprint

HARRY_POTTER = {
    "name": "Harry Potter",
    "aliases": ["Hogwarts", "J.K. Rowling"],
    "documents": ["Harry Potter is a series of fantasy novels by J. K. Rowling."],
}


@pytest.fixture
def api(server, admin_headers):
    with httpx.Client(base_url=server.base_url, headers=admin_headers, timeout=120) as client:
        yield client


@pytest.fixture
def registered(api):
    made = []

    def register(spec):
        r = api.post("/v1/forget-targets", json=spec)
        assert r.status_code == 201, r.text
        made.append(r.json()["id"])
        return r.json()

    yield register
    for target_id in made:
        api.delete(f"/v1/forget-targets/{target_id}")


def test_screen_says_what_would_happen_and_why_without_generating(api, registered):
    target = registered(HARRY_POTTER)
    r = api.post(
        "/v1/forget-targets/screen",
        json={"messages": [{"role": "user", "content": "Which school does Harry Potter attend?"}]},
    )
    assert r.status_code == 200, r.text
    verdict = r.json()
    assert verdict["action"] == "refuse" and verdict["outcome"].startswith("refused")
    (why,) = verdict["targets"]
    assert why["id"] == target["id"] and why["name"] == "Harry Potter"
    assert why["why"].startswith("'Harry Potter': it names")
    plain = api.post("/v1/forget-targets/screen", json={"prompt": "What is 2+2?"}).json()
    assert plain["action"] == "none" and plain["targets"] == []
    bad = api.post("/v1/forget-targets/screen", json={})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages"


def test_screen_is_for_admins_only(server):
    r = httpx.post(f"{server.base_url}/v1/forget-targets/screen", json={"prompt": "Hi"})
    assert r.status_code == 401


def test_the_audit_trail_says_who_changed_what_and_when(api, registered):
    target = registered(HARRY_POTTER)
    assert api.patch(f"/v1/forget-targets/{target['id']}", json={"keywords": ["Quidditch"]})
    assert api.delete(f"/v1/forget-targets/{target['id']}").status_code == 200
    log = api.get("/v1/forget-targets/audit", params={"target_id": target["id"]}).json()["data"]
    assert [(e["op"], e["version"]) for e in log] == [("delete", 2), ("update", 2), ("create", 1)]
    assert {(e["actor"], e["fingerprint"]) for e in log} == {("admin", fingerprint(ADMIN_KEY))}
    assert ADMIN_KEY not in str(log)


def test_targets_are_listed_in_creation_order_and_found_by_name(api, registered):
    ids = [registered({"name": n})["id"] for n in ("Operator Zeta", "Operator Alpha", "Other")]
    listed = api.get("/v1/forget-targets", params={"name": "operator"}).json()["data"]
    assert [t["id"] for t in listed] == ids[:2]
    page = api.get("/v1/forget-targets", params={"limit": 1, "after": ids[0], "name": "oper"})
    assert [t["id"] for t in page.json()["data"]] == [ids[1]]
    gone = api.get("/v1/forget-targets", params={"after": "tgt_nobody"})
    assert gone.status_code == 400 and gone.json()["error"]["param"] == "after"


def test_a_target_exported_and_imported_back_is_the_same_target(api, registered):
    target = registered(HARRY_POTTER)
    exported = api.get(f"/v1/forget-targets/{target['id']}").json()["spec"]
    assert exported["documents"] == HARRY_POTTER["documents"]
    assert api.delete(f"/v1/forget-targets/{target['id']}").status_code == 200
    r = api.post("/v1/forget-targets/import", json={"targets": [exported, {"name": "Hogwarts"}]})
    assert r.status_code == 200, r.text
    first, second = r.json()["data"]
    assert first["target"]["name"] == "Harry Potter" and first["target"]["status"] == "active"
    assert second["target"]["name"] == "Hogwarts"
    again = api.post("/v1/forget-targets/import", json={"targets": [exported]}).json()["data"]
    assert again[0]["param"] == "name" and "already exists" in again[0]["error"]
    for result in (first, second):
        api.delete(f"/v1/forget-targets/{result['target']['id']}")


def test_a_target_proves_itself_on_demand(api, registered):
    import time

    target = registered(HARRY_POTTER)
    url = f"/v1/forget-targets/{target['id']}/verify"
    assert api.get(url).status_code == 404  # nothing to read before a verification ran
    started = api.post(url)
    assert started.status_code == 202 and started.json()["status"] == "running"
    deadline = time.monotonic() + 600
    while (job := api.get(url).json())["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(2)
    assert job["status"] == "completed", job["summary"]
    summary = job["summary"]
    assert summary["forgotten"] == summary["forget_probes"] > 10  # nothing named it
    assert set(summary["by_kind"]) == {"direct", "indirect", "disguised"}
    assert summary["text"].startswith(f"forgotten: {summary['forgotten']} of ")
    assert api.get(f"/v1/forget-targets/{target['id']}").headers["etag"] == '"1"'  # apart
