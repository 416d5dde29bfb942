"""Qdrant's REST API for the tests, around qdrant-client's local mode.

No Qdrant server can be had on these machines (../shared/real-components.md section 5).
qdrant-client's local mode implements Qdrant's semantics in Python (named dense and sparse
vectors, the idf modifier, filters, delete by filter, scroll, count, the Query API with prefetch
and fusion); its `http.models` are generated from the server's OpenAPI with extra="forbid".
This server parses every request body with those models (an unknown or misspelt field is a 400,
as the real server answers), calls the local client, and answers in Qdrant's envelope:
`{"result": ..., "status": "ok", "time": ...}`, errors `{"status": {"error": "..."}}`.

Test hooks (not Qdrant's): `POST /_faults` `{"status": 503, "count": 2, "match": "/points",
"method": "PUT", "retry_after": 1}` answers the next `count` requests whose path contains
`match` (and whose method is `method`, when given) with that status; `GET /_requests` lists the requests seen (method, path, bytes).

Usage: python server.py PORT   (prints "ready" on stdout once it listens)
"""

import json
import re
import sys
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pydantic import ValidationError
from qdrant_client import QdrantClient
from qdrant_client.http import models as m

# Local mode warns that payload indexes do nothing there; the index requests are still checked.
warnings.filterwarnings("ignore", category=UserWarning)
client = QdrantClient(":memory:")
lock = threading.Lock()
faults = []  # [{"status", "count", "match", "retry_after"}]
seen = []  # [{"method", "path", "bytes"}]


class Answer(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def exists(name):
    return client.collection_exists(name)


def need(name):
    if not exists(name):
        raise Answer(404, f"Not found: Collection `{name}` doesn't exist!")


def dump(value):
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, list):
        return [dump(v) for v in value]
    if isinstance(value, dict):
        return {k: dump(v) for k, v in value.items()}
    return value


def record(point):
    out = {"id": point.id, "payload": point.payload}
    if getattr(point, "vector", None) is not None:
        out["vector"] = dump(point.vector)
    if hasattr(point, "score") and point.score is not None:
        out["score"] = point.score
        out["version"] = getattr(point, "version", 0) or 0
    return out


def parse(model, body):
    try:
        return model.model_validate(body if body is not None else {})
    except ValidationError as e:
        raise Answer(400, f"Format error in JSON body: {e}")


def route(method, path, query, body):
    parts = [p for p in path.split("/") if p]
    if parts[:1] != ["collections"]:
        raise Answer(404, f"no route {method} {path}")
    if len(parts) == 1 and method == "GET":
        return {"collections": [{"name": c.name} for c in client.get_collections().collections]}
    name = parts[1]
    rest = "/".join(parts[2:])
    if rest == "" and method == "GET":
        need(name)
        info = dump(client.get_collection(name))
        return info
    if rest == "" and method == "PUT":
        req = parse(m.CreateCollection, body)
        if exists(name):
            raise Answer(409, f"Wrong input: Collection `{name}` already exists!")
        client.create_collection(
            name,
            vectors_config=req.vectors,
            sparse_vectors_config=req.sparse_vectors,
        )
        return True
    if rest == "" and method == "DELETE":
        return client.delete_collection(name)
    need(name)
    if rest == "index" and method == "PUT":
        req = parse(m.CreateFieldIndex, body)
        client.create_payload_index(name, req.field_name, req.field_schema)
        return {"operation_id": 0, "status": "completed"}
    if rest == "points" and method == "PUT":
        req = parse(m.PointsList, body)
        for p in req.points:
            if isinstance(p.id, str) and not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", p.id):
                raise Answer(400, f"Format error in JSON body: value {p.id} is not a valid point ID, valid values are either an unsigned integer or a UUID")
        res = client.upsert(name, points=req.points, wait=query.get("wait") == "true")
        return dump(res)
    if rest == "points/delete" and method == "POST":
        selector = body if body is not None else {}
        req = parse(m.FilterSelector, selector) if "filter" in selector else parse(m.PointIdsList, selector)
        res = client.delete(name, points_selector=req, wait=query.get("wait") == "true")
        return dump(res)
    if rest == "points" and method == "POST":
        req = parse(m.PointRequest, body)
        pts = client.retrieve(name, ids=req.ids, with_payload=req.with_payload if req.with_payload is not None else True, with_vectors=req.with_vector or False)
        return [record(p) for p in pts]
    if rest == "points/scroll" and method == "POST":
        req = parse(m.ScrollRequest, body)
        pts, nxt = client.scroll(
            name,
            scroll_filter=req.filter,
            limit=req.limit or 10,
            offset=req.offset,
            with_payload=req.with_payload if req.with_payload is not None else True,
            with_vectors=req.with_vector or False,
        )
        return {"points": [record(p) for p in pts], "next_page_offset": nxt}
    if rest == "points/count" and method == "POST":
        req = parse(m.CountRequest, body)
        return dump(client.count(name, count_filter=req.filter, exact=True))
    if rest == "points/query" and method == "POST":
        req = parse(m.QueryRequest, body)
        res = client.query_points(
            name,
            query=req.query,
            using=req.using,
            prefetch=req.prefetch,
            query_filter=req.filter,
            limit=req.limit or 10,
            with_payload=req.with_payload if req.with_payload is not None else False,
            score_threshold=req.score_threshold,
        )
        return {"points": [record(p) for p in res.points]}
    if rest == "points/query/groups" and method == "POST":
        req = parse(m.QueryGroupsRequest, body)
        res = client.query_points_groups(
            name,
            group_by=req.group_by,
            query=req.query,
            using=req.using,
            prefetch=req.prefetch,
            query_filter=req.filter,
            limit=req.limit or 10,
            group_size=req.group_size or 3,
            with_payload=req.with_payload if req.with_payload is not None else False,
            with_vectors=req.with_vector or False,
            score_threshold=req.score_threshold,
        )
        return {"groups": [{"id": g.id, "hits": [record(h) for h in g.hits]} for g in res.groups]}
    raise Answer(404, f"no route {method} {path}")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, payload, headers=()):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        started = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path, _, qs = self.path.partition("?")
        query = dict(p.split("=", 1) for p in qs.split("&") if "=" in p)
        if path == "/_faults" and self.command == "POST":
            with lock:
                faults.append(json.loads(raw))
            return self.reply(200, {"result": True, "status": "ok"})
        if path == "/_requests":
            with lock:
                return self.reply(200, {"result": list(seen), "status": "ok"})
        with lock:
            seen.append({"method": self.command, "path": path, "bytes": len(raw)})
            for f in faults:
                if f.get("count", 0) > 0 and f.get("match", "") in path and f.get("method", self.command) == self.command:
                    f["count"] -= 1
                    headers = [("Retry-After", str(f["retry_after"]))] if "retry_after" in f else []
                    return self.reply(f["status"], {"status": {"error": f"injected fault {f['status']}"}, "time": 0}, headers)
        try:
            body = json.loads(raw) if raw else None
        except ValueError as e:
            return self.reply(400, {"status": {"error": f"Format error in JSON body: {e}"}, "time": 0})
        try:
            with lock:
                result = route(self.command, path, query, body)
            self.reply(200, {"result": result, "status": "ok", "time": time.time() - started})
        except Answer as a:
            self.reply(a.status, {"status": {"error": a.message}, "time": time.time() - started})
        except (ValueError, KeyError, TypeError, AssertionError) as e:
            self.reply(400, {"status": {"error": f"Wrong input: {e}"}, "time": time.time() - started})

    do_GET = do_PUT = do_POST = do_DELETE = handle_any


def main():
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
